"""Feature-store speed and memory, measured in one run:

1. extraction throughput of the frozen backbone (images/s);
2. one stage-2 epoch on cached features vs the paper's way (every image cropped, flipped and
   passed through the frozen backbone, only the fc trained), same images, printed as a ratio;
3. a synthetic 100,000 x 2,048 store written batch by batch, with the writer's peak RSS
   (measured in a child process) against the size of the feature array.

    python bench/features.py [--device cuda] [--arch resnet34] [--rows 100000 --dim 2048]
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from common import machine, peak_rss_kib, timed
from lttools.data.augment import random_crop_flip
from lttools.features.store import StoreLayout, open_store, write_store
from lttools.models import create_backbone


def extraction(model, images: torch.Tensor, batch: int) -> float:
    with torch.no_grad():
        for i in range(0, len(images), batch):
            model.features(images[i:i + batch])
    return len(images)


def epoch_paper_way(model, images, labels, fc, gen, batch=64):
    opt = torch.optim.SGD(fc.parameters(), lr=5e-4, momentum=0.9)
    perm = torch.randperm(len(images), generator=gen)
    for i in range(0, len(images), batch):
        idx = perm[i:i + batch]
        with torch.no_grad():
            f = model.features(random_crop_flip(images[idx], 4, gen))
        loss = F.cross_entropy(fc(f), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


def epoch_cached(feats, labels, fc, gen, batch=64):
    opt = torch.optim.SGD(fc.parameters(), lr=5e-4, momentum=0.9)
    perm = torch.randperm(len(feats), generator=gen)
    for i in range(0, len(feats), batch):
        idx = perm[i:i + batch]
        loss = F.cross_entropy(fc(feats[idx]), labels[idx])
        opt.zero_grad()
        loss.backward()
        opt.step()


def big_store_child(path: str, rows: int, dim: int, batch: int) -> None:
    """Runs in its own process so that ru_maxrss is the writer's alone."""
    k = 1000
    labels = np.arange(rows) % k
    layout = StoreLayout(labels={"train": labels, "val": labels[:k], "test": labels[:k]},
                         views={"train": 1, "val": 1, "test": 1},
                         head_weight=np.zeros((k, dim), np.float32),
                         head_bias=np.zeros(k, np.float32),
                         class_counts=np.bincount(labels, minlength=k), feature_dim=dim)
    rng = np.random.default_rng(0)

    def batches():
        for split, n in (("train", rows), ("val", k), ("test", k)):
            for i in range(0, n, batch):
                yield split, 0, i, rng.standard_normal((min(batch, n - i), dim), np.float32)

    before = peak_rss_kib()
    t0 = time.perf_counter()
    write_store(path, layout, {"dataset": "synthetic", "arch": "none", "views": 0}, batches())
    seconds = time.perf_counter() - t0
    open_store(path)
    print(f"{seconds:.2f} {before} {peak_rss_kib()}")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    p.add_argument("--arch", default="resnet32")
    p.add_argument("--images", type=int, default=2048)
    p.add_argument("--batch", type=int, default=512)
    p.add_argument("--rows", type=int, default=100_000)
    p.add_argument("--dim", type=int, default=2048)
    p.add_argument("--child", nargs=4, help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.child:
        big_store_child(args.child[0], *map(int, args.child[1:]))
        return
    print(machine())
    dev = torch.device(args.device)
    model = create_backbone(args.arch, 100, 3).to(dev).eval()
    gen = torch.Generator().manual_seed(0)
    images = torch.randint(0, 256, (args.images, 3, 32, 32), dtype=torch.uint8, generator=gen)
    images = images.to(dev)
    labels = torch.randint(0, 100, (args.images,), generator=gen).to(dev)
    extraction(model, images[:args.batch], args.batch)  # warm-up
    t, n = timed(extraction, model, images, args.batch)
    print(f"extraction ({args.arch}, batch {args.batch}, {args.device}): {n / t:,.0f} images/s")

    with torch.no_grad():
        feats = torch.cat([model.features(images[i:i + args.batch])
                           for i in range(0, len(images), args.batch)])
    fc = torch.nn.Linear(feats.shape[1], 100).to(dev)
    t_paper, _ = timed(epoch_paper_way, model, images, labels, fc, gen)
    t_cached, _ = timed(epoch_cached, feats, labels, fc, gen)
    print(f"one re-training epoch over {args.images} images, batch 64:")
    print(f"  paper's way (crop+flip, frozen backbone every batch): {t_paper:.3f} s")
    print(f"  cached features:                                     {t_cached:.3f} s")
    print(f"ratio: {t_paper / t_cached:.1f}")

    with tempfile.TemporaryDirectory() as tmp:
        path = str(Path(tmp) / "big.h5")
        out = subprocess.run([sys.executable, __file__, "--child", path, str(args.rows),
                              str(args.dim), "1024"], capture_output=True, text=True, check=True)
        seconds, rss_before_kb, rss_kb = out.stdout.split()
        size = Path(path).stat().st_size
    array_mb = args.rows * args.dim * 4 / 2**20
    print(f"synthetic store {args.rows:,} x {args.dim:,} float32 ({array_mb:,.0f} MiB of "
          f"features, file {size / 2**20:,.0f} MiB) written in {float(seconds):.1f} s")
    print(f"  writer peak RSS {int(rss_kb) / 1024:,.0f} MiB, of which "
          f"{int(rss_before_kb) / 1024:,.0f} MiB before writing (Python, torch, h5py); "
          f"the write added {(int(rss_kb) - int(rss_before_kb)) / 1024:,.0f} MiB")


if __name__ == "__main__":
    main()
