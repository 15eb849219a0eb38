"""Stage `extract_features@<seed>`: one backbone replicate's frozen penultimate features of every
split -> its HDF5 store.
Resumes an interrupted run at its first unfinished chunk; under torchrun every process
extracts its slice and the first writes the store."""
import _this_repo  # noqa: F401  (this repository's lttools, imported first)
from lttools.backbone.distributed import close_distributed, init_distributed, process_device
from lttools.backbone.saved import load_backbone
from lttools.config import from_section
from lttools.data.prepared import read_splits
from lttools.device import resolve_device
from lttools.features.extract import ExtractConfig, extract_to_store
from lttools.replicates import backbone_path, features_path
from lttools.stage_cli import load_params, parser, run, section


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--data", default="data/prepared/dataset.h5")
    p.add_argument("--seed", type=int, default=0, help="the backbone replicate")
    p.add_argument("--backbone", help="default: models/backbones/<seed>.pt")
    p.add_argument("--out", help="default: data/features/<seed>/features.h5")
    args = p.parse_args()
    args.backbone = args.backbone or str(backbone_path(args.seed))
    args.out = args.out or str(features_path(args.seed))
    cfg = from_section(ExtractConfig, section(load_params(args.params), "features"), "features")
    cfg.validate()
    splits = read_splits(args.data)
    dev = resolve_device(cfg.device)
    ctx = init_distributed(dev)
    try:
        saved = load_backbone(args.backbone, str(process_device(dev, ctx)))
        extract_to_store(saved, splits, args.backbone, args.out, cfg,
                         args.quiet or not ctx.is_main, ctx)
    finally:
        close_distributed(ctx)


if __name__ == "__main__":
    run(main, interrupted="interrupted; the finished chunks are kept beside the store: "
                          "`dvc repro` resumes at the first unfinished one")
