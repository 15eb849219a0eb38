"""Stage `prepare_data`: long-tailed train / balanced validation / test images -> one HDF5."""
import json

from lttools.config import from_section
from lttools.data.prepared import DataConfig, prepare, write_splits
from lttools.stage_cli import load_params, parser, run, section


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--out", default="data/prepared/dataset.h5")
    args = p.parse_args()
    cfg = from_section(DataConfig, section(load_params(args.params), "data"), "data")
    splits = prepare(cfg)
    write_splits(args.out, splits)
    counts = splits.class_counts
    print(f"{splits.dataset} read from {splits.source}: {len(splits.labels['train'])} train "
          f"(class sizes {counts.max()}..{counts.min()}), {len(splits.labels['val'])} val, "
          f"{len(splits.labels['test'])} test")
    for name, digest in sorted(json.loads(splits.meta["raw_sha256"]).items()):
        print(f"  sha256 {digest}  {name}")


if __name__ == "__main__":
    run(main)
