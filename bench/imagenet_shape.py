"""Stage 1 and extraction on ImageNet-shaped data: generated JPEGs of about 500 x 375 in the
ImageFolder layout, a torchvision ResNet-50 at 224 x 224. Images/s of the paper's reference
path (torchvision transforms in DataLoader workers, fp32) against lttools' fast path (uint8
crops from the workers, channels_last, bf16 autocast and fused SGD on CUDA), with JPEGs
decoded on the CPU, on the GPU (gpu_decode), and from the packed file; then feature
extraction images/s. Measured in one run; ratios against the reference.

    python bench/imagenet_shape.py --images 4096 --batch 256 --workers 16     # on a GPU
    python bench/imagenet_shape.py --images 128 --arch resnet18 --size 64 --batch 32  # smoke
"""
from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from pathlib import Path

import torch

from common import machine
from data import prepared, write_jpegs
from lttools.backbone.config import BackboneConfig
from lttools.backbone.reference import train_reference
from lttools.backbone.saved import SavedBackbone
from lttools.backbone.train import train_backbone
from lttools.data.packed import pack_images
from lttools.features.extract import ExtractConfig, extract_to_store
from lttools.models import create_backbone


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--images", type=int, default=4096)
    p.add_argument("--arch", default="resnet50")
    p.add_argument("--size", type=int, default=224)
    p.add_argument("--batch", type=int, default=256)
    p.add_argument("--workers", type=int, default=16)
    p.add_argument("--epochs", type=int, default=2, help="the first warms up; the last is timed")
    args = p.parse_args()
    print(machine())
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        write_jpegs(root, args.images)
        splits = prepared(root, pack=False, size=args.size)
        cfg = BackboneConfig(arch=args.arch, epochs=args.epochs, batch_size=args.batch,
                             base_batch_size=args.batch, lr=0.1, workers=args.workers,
                             normalization="imagenet", eval_every=args.epochs + 1)
        rows = []
        _, speeds = train_reference(splits, cfg, dev, workers=args.workers)
        rows.append(("reference: torchvision transforms in workers, fp32", speeds[-1]))
        runs = [("fast path, CPU-decoded uint8 crops", cfg, splits)]
        if dev == "cuda":
            runs.append(("fast path, JPEGs decoded on the GPU", dataclasses.replace(
                cfg, gpu_decode=True), splits))
        t0 = time.perf_counter()
        pack_images(splits, root / "images.h5", args.workers)
        pack_seconds = time.perf_counter() - t0
        packed = dataclasses.replace(splits, packed=root / "images.h5")
        runs.append(("fast path, packed file", cfg, packed))
        for name, c, s in runs:
            hist = train_backbone(s, c, dev, quiet=True).history
            rows.append((name, hist[-1]["images_per_s"]))
        model = create_backbone(args.arch, splits.num_classes, 3).to(dev)
        ckpt = root / "dummy.pt"
        ckpt.write_bytes(b"x")
        t0 = time.perf_counter()
        extract_to_store(SavedBackbone(model, "trained", {}), splits, ckpt, root / "f.h5",
                         ExtractConfig(views=1, flip_test=False, workers=args.workers,
                                       batch_size=args.batch, device=dev), quiet=True)
        n = 2 * splits.size("train") + splits.size("test")
        extract_rate = n / (time.perf_counter() - t0)
    ref = rows[0][1]
    print(f"\n{args.images:,} JPEGs, {args.arch} at {args.size}, batch {args.batch}, "
          f"{args.workers} workers, {dev}; images/s of the last of {args.epochs} epochs")
    print("| stage 1 | images/s | ratio |")
    print("|---|---|---|")
    for name, rate in rows:
        print(f"| {name} | {rate:.0f} | {rate / ref:.2f} |")
    print(f"packing once: {pack_seconds:.1f} s; extraction (clean + 1 augmented view of train, "
          f"test): {extract_rate:.0f} images/s")


if __name__ == "__main__":
    main()
