"""Stage `prepare_data`: which images are long-tailed train, validation and test -> one HDF5
(the images themselves for a small dataset; a manifest, and optionally a packed copy, for
image files)."""
import _this_repo  # noqa: F401  (this repository's lttools, imported first)
import json
from pathlib import Path

from lttools.config import from_section
from lttools.data.packed import pack_images
from lttools.data.prepare import prepare
from lttools.data.prepared import PACKED_FILE, DataConfig, FileSplits, write_splits
from lttools.stage_cli import load_params, parser, run, section


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--out", default="data/prepared/dataset.h5",
                   help="the prepared dataset; a packed image file goes beside it")
    p.add_argument("--workers", type=int, default=0, help="processes that pack (0: all cores)")
    args = p.parse_args()
    cfg = from_section(DataConfig, section(load_params(args.params), "data"), "data")
    splits = prepare(cfg, quiet=args.quiet)
    out = Path(args.out)
    if isinstance(splits, FileSplits) and cfg.pack:
        pack_images(splits, out.parent / PACKED_FILE, args.workers, args.quiet)
    write_splits(out, splits)
    counts = splits.class_counts
    print(f"{splits.dataset} read from {splits.source}: {splits.size('train')} train "
          f"(class sizes {counts.max()}..{counts.min()}), {splits.size('val')} val, "
          f"{splits.size('test')} test")
    for name, digest in sorted(json.loads(splits.meta.get("raw_sha256", "{}")).items()):
        print(f"  sha256 {digest}  {name}")
    for name, digest in sorted(json.loads(splits.meta.get("list_sha256", "{}")).items()):
        print(f"  sha256 {digest}  {name}")
    if "manifest_sha256" in splits.meta:
        print(f"  manifest sha256 {splits.meta['manifest_sha256']} (paths, labels, sizes, "
              "modification times)")


if __name__ == "__main__":
    run(main)
