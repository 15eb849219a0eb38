"""Stage `import_features`: a feature store from arrays extracted elsewhere (params `import:`)."""
import _this_repo  # noqa: F401  (this repository's lttools, imported first)
from lttools.config import from_section
from lttools.features.arrays import ImportConfig, import_arrays
from lttools.stage_cli import load_params, parser, run, section


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--out", default="features.h5")
    p.add_argument("--device", default="cpu", help="where a missing head is fitted")
    args = p.parse_args()
    cfg = from_section(ImportConfig, section(load_params(args.params), "import"), "import")
    attrs = import_arrays(cfg, args.out, args.device)
    print(f"{cfg.source} -> {args.out}: {attrs['views']} augmented view(s), head "
          f"{attrs['head_source']}")


if __name__ == "__main__":
    run(main)
