"""Stage-1 throughput: the fast path (lttools.backbone.train: data resident on the device, batched
crop+flip, channels_last, bf16 + fused SGD on CUDA, optional large batch / compile) vs the
paper's way (lttools.backbone.reference: DataLoader workers, per-image CPU augmentation, fp32,
batch 64), on the same random CIFAR-100-LT-shaped data, measured in one run.

    python bench/stage1.py                                  # CPU, small
    python bench/stage1.py --arch resnet34 --images 10847 --epochs 4 --workers 8 \
        --fast 64 64:graphs 512 512:compile
"""
from __future__ import annotations

import argparse
import statistics

import numpy as np
import torch

from common import machine
from lttools.data.prepared import Splits
from lttools.backbone.config import BackboneConfig
from lttools.backbone.train import train_backbone
from lttools.backbone.reference import train_reference


def random_splits(n: int, k: int = 100, size: int = 32) -> Splits:
    rng = np.random.RandomState(0)
    y = rng.randint(0, k, n)
    empty = np.zeros((0, 3, size, size), np.uint8)
    return Splits("random", k, {"train": rng.randint(0, 256, (n, 3, size, size), dtype=np.uint8),
                                "val": empty, "test": empty},
                  {"train": y, "val": np.zeros(0, np.int64), "test": np.zeros(0, np.int64)})


def fast_variant(spec: str) -> tuple[int, str]:
    """"512" or "64:graphs" / "512:compile" -> (batch, extra)."""
    batch, _, extra = spec.partition(":")
    if extra not in ("", "compile", "graphs"):
        raise argparse.ArgumentTypeError(f"{spec!r}: after ':' comes compile or graphs")
    return int(batch), extra


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--arch", default="resnet32")
    p.add_argument("--images", type=int, default=2048)
    p.add_argument("--epochs", type=int, default=3, help="median over epochs after the first")
    p.add_argument("--ref-batch", type=int, default=64)
    p.add_argument("--fast", nargs="+", type=fast_variant, default=[(64, "")],
                   metavar="BATCH[:compile|:graphs]",
                   help="fast-path settings to measure, e.g. 64 512 64:graphs 512:compile")
    p.add_argument("--workers", type=int, default=2)
    args = p.parse_args()
    print(machine())
    splits = random_splits(args.images)
    print(f"{args.images} random 32x32x3 images, 100 classes, {args.arch}, {args.device}")

    ref_cfg = BackboneConfig(arch=args.arch, epochs=args.epochs, batch_size=args.ref_batch)
    _, ref_speeds = train_reference(splits, ref_cfg, args.device, args.workers)
    ref = statistics.median(ref_speeds[1:] or ref_speeds)
    print(f"  reference (DataLoader x{args.workers} workers, CPU crop+flip, fp32, batch "
          f"{args.ref_batch}): {ref:,.0f} images/s", flush=True)
    amp = "bf16" if args.device.startswith("cuda") else "fp32"
    for batch, extra in args.fast:
        cfg = BackboneConfig(arch=args.arch, epochs=args.epochs, batch_size=batch,
                             compile=extra == "compile", cuda_graphs=extra == "graphs")
        speeds = [row["images_per_s"]
                  for row in train_backbone(splits, cfg, args.device, quiet=True).history]
        fast = statistics.median(speeds[1:] or speeds)
        label = {"": "", "compile": ", torch.compile", "graphs": ", CUDA graphs"}[extra]
        print(f"  fast path (resident data, batched crop+flip, channels_last, {amp}, batch "
              f"{batch}{label}): {fast:,.0f} images/s (first epoch {speeds[0]:,.0f})  "
              f"ratio: {fast / ref:.2f}", flush=True)


if __name__ == "__main__":
    main()
