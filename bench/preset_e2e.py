"""A shipped preset end to end, the way docs/own-data.md uses it, on synthetic images at the preset's
real list shape (its class count and its train / val / test sizes, with a long-tailed
training profile): `cp presets/<name>.yaml params.yaml`, list files in data/lists/, `dvc
repro` through every stage. To finish on a CPU, the images are small and the schedules
short: the overrides are printed, and none of them touches a param a stage lists.

    python bench/preset_e2e.py                       # places_lt: 106,300 images, 365 classes
    python bench/preset_e2e.py --preset imagenet_lt  # 185,846 images, 1,000 classes
"""
from __future__ import annotations

import argparse
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from pipeline_helpers import env, git, make_repo  # noqa: E402
from lttools.data.images import PRESETS  # noqa: E402
from common import long_tailed_counts  # noqa: E402

# the real training lists' largest and smallest class
TAILS = {"imagenet_lt": (1280, 5), "inat2018": (1000, 2), "places_lt": (4980, 5)}
# what a CPU can finish: small images, one fine-tuning epoch, one epoch per method
OVERRIDES = {"data": {"image_size": 32},
             "backbone": {"arch": "resnet18", "epochs": 1, "batch_size": 256,
                          "base_batch_size": 256, "init": "models/pretrained/resnet18_bench.pth"},
             "features": {"batch_size": 256}}


def write_images(root: Path, lists: Path, preset: str, seed: int = 0) -> int:
    """JPEGs of 40 x 32 pixels, each class a colour plus noise, and the preset's list files."""
    from PIL import Image

    p = PRESETS[preset]
    rng = np.random.default_rng(seed)
    colours = rng.integers(0, 256, (p.num_classes, 3))
    per_split = {"train": long_tailed_counts(p.num_classes, p.sizes["train"], *TAILS[preset])}
    for split in ("val", "test"):
        if split in p.sizes:
            per_split[split] = np.full(p.num_classes, p.sizes[split] // p.num_classes)
    written = 0
    for split, counts in per_split.items():
        lines = []
        for label, n in enumerate(counts):
            folder = root / split / f"c{label:04d}"
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(n):
                pixels = np.clip(colours[label] + rng.integers(-60, 61, (32, 40, 3)), 0, 255)
                Image.fromarray(pixels.astype(np.uint8)).save(folder / f"{i}.jpg", quality=85)
                lines.append(f"{split}/c{label:04d}/{i}.jpg {label}")
        (lists / p.lists[split]).write_text("\n".join(lines) + "\n")
        written += len(lines)
    return written


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--preset", default="places_lt", choices=sorted(PRESETS))
    ap.add_argument("--workdir", default=None, help="kept after the run (default: a temp dir)")
    ap.add_argument("--method-epochs", type=int, default=1,
                    help="epochs of every trained method (0: the preset's own)")
    args = ap.parse_args()
    work = Path(args.workdir or tempfile.mkdtemp(prefix=f"lttools-{args.preset}-"))
    repo = make_repo(work / "repo", {}, commit=False)
    shutil.copy(ROOT / f"presets/{args.preset}.yaml", repo / "params.yaml")  # docs/own-data.md's recipe
    params = yaml.safe_load((repo / "params.yaml").read_text())
    params["data"]["root"] = str(work / "images")
    for section, values in OVERRIDES.items():
        params[section].update(values)
    if args.method_epochs:
        for entry in params["methods"].values():
            if entry.get("epochs", 1) != 0:
                entry["epochs"] = args.method_epochs
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    print(f"{args.preset}: {repo}; overrides {OVERRIDES}, every trained method "
          f"{args.method_epochs or 'its own'} epoch(s)")

    import torch
    import torchvision

    torch.manual_seed(0)
    torch.save(torchvision.models.resnet18(num_classes=1000).state_dict(),
               repo / "models/pretrained/resnet18_bench.pth")  # the weights a user brings
    t0 = time.perf_counter()
    n = write_images(work / "images", repo / "data/lists", args.preset)
    print(f"wrote {n:,} images and the list files in {time.perf_counter() - t0:.0f} s")
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "preset")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "dvc", "repro"], cwd=repo, env=env(),
                         capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    print(out.stdout[-3000:], out.stderr[-3000:])
    stages = [line.split("'")[1] for line in out.stdout.splitlines()
              if line.startswith("Running stage")]
    print(f"dvc repro exit {out.returncode} in {seconds:.0f} s; stages run: {len(stages)} "
          f"({stages[0] if stages else '-'} .. {stages[-1] if stages else '-'})")
    if (repo / "metrics/leaderboard.md").exists():
        print((repo / "metrics/leaderboard.md").read_text())
    sys.exit(out.returncode)


if __name__ == "__main__":
    main()
