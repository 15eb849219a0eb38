"""Stage `extract_features`: frozen penultimate features of every split -> the HDF5 store."""
from lttools.config import from_section
from lttools.data.prepared import read_splits
from lttools.extract import ExtractConfig, extract_to_store
from lttools.stage_cli import load_params, parser, run, section
from lttools.backbone.saved import load_backbone


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--data", default="data/prepared/dataset.h5")
    p.add_argument("--backbone", default="models/backbone.pt")
    p.add_argument("--out", default="data/features/features.h5")
    args = p.parse_args()
    params = section(load_params(args.params), "features")
    cfg = from_section(ExtractConfig, params, "features")
    splits = read_splits(args.data)
    saved = load_backbone(args.backbone, cfg.device)
    extract_to_store(saved, splits, args.backbone, args.out, cfg, args.quiet)


if __name__ == "__main__":
    run(main)
