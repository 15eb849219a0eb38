"""Image loading speed and memory, measured in one run on the same generated JPEGs of
ImageNet's typical size (about 500 x 375):

1. decoded + augmented images/s per core: lttools' loader (lttools.data.loader: PIL with
   reduced-size JPEG decoding, torch's uint8 antialiased resize, uint8 batches, the model
   normalises)
   against a plain torchvision ImageFolder + DataLoader with the standard transforms
   (RandomResizedCrop(224), RandomHorizontalFlip, ToTensor, Normalize), same workers and
   batch size; then lttools' loader on the packed image file (data.pack), whose one-time
   packing is timed and reported apart;
2. peak RSS of prepare_data, one stage-1 epoch and feature extraction at two dataset sizes
   (each in its own process; loader workers reported apart): it must not grow with the number
   of images.

    python bench/data.py [--images 2000] [--workers 2] [--rss-sizes 1000 10000]
"""
from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from common import machine, peak_rss_kib

CLASSES = 10


def write_jpegs(root: Path, n: int, seed: int = 0) -> None:
    """n photo-like JPEGs (smooth colour fields plus texture, quality 90) in the ImageFolder
    layout root/train/<class>/, sizes around 500 x 375 as ImageNet's, and a small test/."""
    from PIL import Image

    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:400, 0:520]
    for split, count in (("train", n), ("test", CLASSES)):
        for i in range(count):
            c = i % CLASSES
            w, h = int(rng.integers(440, 520)), int(rng.integers(330, 400))
            base = rng.integers(0, 256, 3)
            field = (base[None, None] + 60 * np.sin(xx[:h, :w, None] / rng.uniform(20, 60)
                                                    + yy[:h, :w, None] / rng.uniform(20, 60)
                                                    + rng.uniform(0, 6, 3)))
            pixels = np.clip(field + rng.normal(0, 18, (h, w, 3)), 0, 255).astype(np.uint8)
            folder = root / split / f"class{c}"
            folder.mkdir(parents=True, exist_ok=True)
            Image.fromarray(pixels).save(folder / f"img{i:06d}.jpg", quality=90)


def prepared(root: Path, pack: bool, size: int = 224):
    from lttools.data.prepare import prepare
    from lttools.data.prepared import DataConfig

    splits = prepare(DataConfig("image_folder", root=str(root), longtail="given",
                                image_size=size, pack=pack))
    return splits


def throughput(loader, batches: int) -> float:
    """Images/s over `batches` batches after two warm-up batches."""
    it = iter(loader)
    for _ in range(2):
        next(it)
    t0, seen = time.perf_counter(), 0
    for _ in range(batches):
        x, _ = next(it)
        seen += len(x)
    return seen / (time.perf_counter() - t0)


def check_cost(root: Path, workers: int = 8) -> None:
    """prepare_data's per-file check (every JPEG decoded at 1/8 scale, so a truncated one is
    caught) against opening and PIL's verify() only (the earlier check, which misses JPEG
    truncation), on the same files in one run; page cache warm for both."""
    from concurrent.futures import ThreadPoolExecutor

    from PIL import Image

    from lttools.data.images import check_files, class_folders, scan_folder

    split = scan_folder(root / "train", class_folders(root / "train"))
    paths = [root / p for p in split.paths]

    def verify(path: Path) -> None:
        with Image.open(path) as img:
            img.verify()

    with ThreadPoolExecutor(workers) as pool:
        list(pool.map(verify, paths))  # warm the page cache
        t0 = time.perf_counter()
        list(pool.map(verify, paths))
        t_verify = time.perf_counter() - t0
    t0 = time.perf_counter()
    check_files(root, split, workers)
    t_check = time.perf_counter() - t0
    n = len(paths)
    print(f"per-file check of {n:,} JPEGs ({workers} threads): verify() only {n / t_verify:,.0f} "
          f"images/s; prepare_data's check (decoded at 1/8) {n / t_check:,.0f} images/s; "
          f"cost ratio {t_check / t_verify:.2f}")


def timed_batches(images: int, batch: int, wanted: int) -> int:
    """As many of the `wanted` timed batches as the images allow after two warm-up batches
    (the loaders go through the images once); too few images for one is refused."""
    available = images // batch - 2
    if available < 1:
        raise SystemExit(f"{images:,} training images make {images // batch} batches of "
                         f"{batch}: too few to time one after two warm-up batches; give --images "
                         f"of at least {3 * batch:,} or a smaller --batch")
    if available < wanted:
        print(f"timing {available} batches, not {wanted}: {images:,} training images make "
              f"{images // batch} batches of {batch}, 2 of them warm-up")
    return min(wanted, available)


def speed(root: Path, workers: int, batch: int, batches: int, pack_workers: int) -> None:
    import torch
    from torch.utils.data import DataLoader
    from torchvision import datasets, transforms as T

    from lttools.data.loader import EpochBatches, ImageFiles, keyed_batches, make_loader
    from lttools.data.packed import pack_images

    torch.set_num_threads(1)
    reference = datasets.ImageFolder(str(root / "train"), T.Compose([
        T.RandomResizedCrop(224), T.RandomHorizontalFlip(), T.ToTensor(),
        T.Normalize((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))]))
    batches = timed_batches(len(reference), batch, batches)
    ref = throughput(DataLoader(reference, batch_size=batch, shuffle=True, num_workers=workers,
                                persistent_workers=True), batches)
    splits = prepared(root, pack=False)
    n = splits.size("train")

    def ours(s) -> float:
        sampler = EpochBatches()
        order = np.random.default_rng(0).permutation(n)
        sampler.batches = keyed_batches(order, 0, batch)
        return throughput(make_loader(ImageFiles(s, "train", train=True), sampler, workers,
                                      pin=False), batches)

    fast = ours(splits)
    t0 = time.perf_counter()
    packed_file = root / "images.h5"
    pack_images(splits, packed_file, pack_workers)
    pack_seconds = time.perf_counter() - t0
    splits.packed = packed_file
    packed = ours(splits)
    per = lambda v: v / workers  # noqa: E731
    print(f"\n{n:,} JPEGs of about 500 x 375, batch {batch}, {workers} worker(s) each side, "
          f"{batches} batches timed")
    print("| loader | images/s | per core | ratio |")
    print("|---|---|---|---|")
    print(f"| torchvision ImageFolder + standard transforms | {ref:.0f} | {per(ref):.0f} | 1.00 |")
    print(f"| lttools, image files | {fast:.0f} | {per(fast):.0f} | {fast / ref:.2f} |")
    print(f"| lttools, packed file | {packed:.0f} | {per(packed):.0f} | {packed / ref:.2f} |")
    print(f"packing once (re-encoding {n:,} images at shorter side 256, {pack_workers or os.cpu_count()} "
          f"processes): {pack_seconds:.1f} s, {packed_file.stat().st_size / 2 ** 20:.0f} MiB "
          f"(the JPEGs: {sum(p.stat().st_size for p in (root / 'train').rglob('*.jpg')) / 2 ** 20:.0f} MiB)")


def rss_child(what: str, root: str, workers: int) -> None:
    """Runs in its own process: one step of the pipeline; prints peak RSS (main, workers)."""
    import torch

    from lttools.backbone.config import BackboneConfig
    from lttools.backbone.saved import SavedBackbone
    from lttools.backbone.train import train_backbone
    from lttools.features.extract import ExtractConfig, extract_to_store
    from lttools.models import create_backbone

    torch.set_num_threads(1)
    base = peak_rss_kib()
    t0 = time.perf_counter()
    splits = prepared(Path(root), pack=False, size=64)
    prepare_seconds = time.perf_counter() - t0
    if what == "train":
        train_backbone(splits, BackboneConfig(arch="resnet18", epochs=1, batch_size=64,
                                              workers=workers, normalization="imagenet"),
                       "cpu", quiet=True)
    elif what == "extract":
        model = create_backbone("resnet18", CLASSES, 3).eval()
        ckpt = Path(root) / "dummy.pt"
        ckpt.write_bytes(b"backbone")
        extract_to_store(SavedBackbone(model, "trained", {}), splits, ckpt, Path(root) / "f.h5",
                         ExtractConfig(views=1, workers=workers, batch_size=64, device="cpu"),
                         quiet=True)
    main = peak_rss_kib()
    kids = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss
    print(json.dumps({"start": base / 1024, "main": main / 1024, "workers": kids / 1024,
                      "prepare_seconds": prepare_seconds}))


def memory(sizes: list[int], workers: int) -> None:
    rows = []
    for n in sizes:
        with tempfile.TemporaryDirectory() as tmp:
            write_jpegs(Path(tmp), n)
            for what in ("prepare", "train", "extract"):
                out = subprocess.run([sys.executable, __file__, "--rss-child", what, tmp,
                                      "--workers", str(workers)], capture_output=True, text=True,
                                     env=dict(os.environ, PYTHONPATH=str(Path(__file__).parents[1])))
                if out.returncode:
                    raise SystemExit(out.stderr[-2000:])
                rows.append((n, what, json.loads(out.stdout.strip().splitlines()[-1])))
    print("\npeak RSS (MiB; stage 1 and extraction with ResNet-18 at 64 x 64, "
          f"{workers} loader worker(s))")
    print("| step | " + " | ".join(f"{n:,} images: main / largest worker" for n in sizes) +
          " | growth of main |")
    print("|---|" + "---|" * (len(sizes) + 1))
    for what in ("prepare", "train", "extract"):
        r = [m for n, w, m in rows if w == what]
        growth = 100 * (r[-1]["main"] / r[0]["main"] - 1)
        print(f"| {what} | " + " | ".join(f"{m['main']:.0f} / {m['workers']:.0f}" for m in r) +
              f" | {growth:+.1f}% |")
    n, _, m = next(row for row in rows[::-1] if row[1] == "prepare")
    print(f"prepare_data checked {n:,} images (each opened once as an image) in "
          f"{m['prepare_seconds']:.1f} s: {n / m['prepare_seconds']:.0f} images/s")


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--images", type=int, default=2000)
    p.add_argument("--workers", type=int, default=2)
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--batches", type=int, default=20)
    p.add_argument("--rss-sizes", type=int, nargs="*", default=[1000, 10000])
    p.add_argument("--rss-child", nargs=2, metavar=("STEP", "ROOT"), help=argparse.SUPPRESS)
    args = p.parse_args()
    if args.rss_child:
        rss_child(args.rss_child[0], args.rss_child[1], args.workers)
        return
    print(machine())
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        write_jpegs(Path(tmp), args.images)
        print(f"wrote {args.images:,} JPEGs in {time.perf_counter() - t0:.1f} s")
        check_cost(Path(tmp))
        speed(Path(tmp), args.workers, args.batch, args.batches, args.workers)
    if args.rss_sizes:
        memory(args.rss_sizes, args.workers)


if __name__ == "__main__":
    main()
