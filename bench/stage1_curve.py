"""How many stage-1 epochs the default backbone needs: for each epoch budget E (the cosine
schedule spans E), train with every seed and report the final validation and test balanced
accuracy, mean ± std over seeds, and the time. The default schedule is chosen from this curve.

    dvc repro prepare_data
    python bench/stage1_curve.py --epochs 30 45 60 80 100 --seeds 0 1 2 [--threads 1]

Rows are appended to --out (JSON lines) as they finish, so a long run can be read early and
resumed: finished (epochs, seed, batch) rows are skipped.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import time
from pathlib import Path

import numpy as np
import torch

from common import machine
from lttools.backbone.config import BackboneConfig
from lttools.backbone.evaluate import evaluate_images
from lttools.backbone.train import train_backbone
from lttools.data.prepared import Splits, read_splits
from lttools.stage_cli import load_params


def _without_val(splits: Splits) -> Splits:
    """The same data with an empty validation split: no per-epoch evaluation while training."""
    images = dict(splits.images, val=splits.images["val"][:0])
    labels = dict(splits.labels, val=splits.labels["val"][:0])
    return dataclasses.replace(splits, images=images, labels=labels)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", default="data/prepared/dataset.h5")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--epochs", type=int, nargs="+", default=[30, 45, 60, 80, 100])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--batch-size", type=int, default=None)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--out", default="bench/out/stage1_curve.jsonl")
    args = p.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    print(machine())
    splits = read_splits(args.data)
    train_only = _without_val(splits)
    base = BackboneConfig.from_params(load_params(args.params)["backbone"])
    if args.batch_size:
        base = dataclasses.replace(base, batch_size=args.batch_size)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    done = [json.loads(line) for line in out.read_text().splitlines()] if out.exists() else []
    key = lambda r: (r["epochs"], r["seed"], r["batch_size"])  # noqa: E731
    finished = {key(r) for r in done}
    print(f"{splits.dataset}, {len(splits.labels['train'])} training images, {base.arch}, "
          f"batch {base.batch_size}, lr {base.scaled_lr:g}")
    for epochs in args.epochs:
        for seed in args.seeds:
            cfg = dataclasses.replace(base, epochs=epochs, seed=seed)
            if (epochs, seed, cfg.batch_size) in finished:
                continue
            t0 = time.perf_counter()
            result = train_backbone(train_only, cfg, dev, quiet=True)
            row = {"epochs": epochs, "seed": seed, "batch_size": cfg.batch_size,
                   "seconds": time.perf_counter() - t0,
                   "train_loss": result.history[-1]["loss"],
                   "val_bacc": evaluate_images(result.model, splits, "val")["bacc"],
                   "test_bacc": evaluate_images(result.model, splits, "test")["bacc"]}
            done.append(row)
            with out.open("a") as f:
                f.write(json.dumps(row) + "\n")
            print(json.dumps(row), flush=True)
    print(f"\n{'epochs':>6} {'val bacc':>15} {'test bacc':>15} {'s/run':>7}  (batch {base.batch_size})")
    for epochs in args.epochs:
        rows = [r for r in done if r["epochs"] == epochs and r["batch_size"] == base.batch_size]
        if not rows:
            continue
        v, t = [r["val_bacc"] for r in rows], [r["test_bacc"] for r in rows]
        sd = lambda x: float(np.std(x, ddof=1)) if len(x) > 1 else 0.0  # noqa: E731
        print(f"{epochs:>6} {np.mean(v):7.2f} ± {sd(v):5.2f} {np.mean(t):7.2f} ± {sd(t):5.2f} "
              f"{np.mean([r['seconds'] for r in rows]):7.0f}   ({len(rows)} seeds)")


if __name__ == "__main__":
    main()
