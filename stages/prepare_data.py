"""Stage `prepare_data`: long-tailed train / balanced validation / test images -> one HDF5."""
from lttools.data.prepared import prepare, write_splits
from lttools.stage_cli import load_params, parser, run, section


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--out", default="data/prepared/dataset.h5")
    args = p.parse_args()
    d = section(load_params(args.params), "data")
    splits = prepare(d["dataset"], d.get("root"), bool(d.get("download", False)),
                     d["imb_ratio"], d["max_per_class"], d.get("val_per_class", 0),
                     d.get("selection", "first"), d.get("seed", 0))
    write_splits(args.out, splits)
    counts = splits.class_counts
    print(f"{splits.dataset}: {len(splits.labels['train'])} train (class sizes {counts.max()}.."
          f"{counts.min()}), {len(splits.labels['val'])} val, {len(splits.labels['test'])} test")


if __name__ == "__main__":
    run(main)
