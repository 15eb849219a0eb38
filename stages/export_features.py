"""Stage `export_features`: a feature store's arrays as an .npz (what `import_features` reads)."""
import _this_repo  # noqa: F401  (this repository's lttools, imported first)
from lttools.features.arrays import export_store
from lttools.stage_cli import parser, run


def main() -> None:
    p = parser(__doc__)
    p.add_argument("store", help="the feature store (.h5)")
    p.add_argument("out", help="the .npz to write")
    args = p.parse_args()
    export_store(args.store, args.out)
    print(f"{args.store} -> {args.out}")


if __name__ == "__main__":
    run(main)
