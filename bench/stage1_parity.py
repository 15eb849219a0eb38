"""Accuracy parity of the stage-1 paths on real data (the prepared Fashion-MNIST-LT of the
default pipeline): fast path at batch 64, the paper's reference path at batch 64, and the
fast path at a large batch with the learning rate scaled linearly and a warm-up. Test
balanced accuracy, mean ± std over seeds.

    dvc repro prepare_data && python bench/stage1_parity.py [--seeds 0 1] [--epochs 30]
"""
from __future__ import annotations

import argparse
import dataclasses

import numpy as np
import torch

from common import machine
from lttools.data.prepared import read_splits
from lttools.stage_cli import load_params
from lttools.backbone.config import BackboneConfig
from lttools.backbone.evaluate import evaluate_images
from lttools.backbone.train import train_backbone
from lttools.backbone.reference import train_reference


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", default="data/prepared/dataset.h5")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    p.add_argument("--epochs", type=int, default=None)
    p.add_argument("--large-batch", type=int, default=512)
    p.add_argument("--warmup", type=float, default=2.0)
    p.add_argument("--runs", nargs="+", choices=("fast", "reference", "large"),
                   default=["fast", "reference", "large"], help="which paths to train")
    args = p.parse_args()
    print(machine())
    splits = read_splits(args.data)
    base = BackboneConfig.from_params(load_params(args.params)["backbone"])
    if args.epochs:
        base = dataclasses.replace(base, epochs=args.epochs)
    dev = "cuda" if torch.cuda.is_available() else "cpu"
    runs = {
        "fast": (f"fast, batch {base.batch_size}",
                 lambda cfg: train_backbone(splits, cfg, dev, quiet=True).model),
        "reference": (f"reference, batch {base.batch_size}",
                      lambda cfg: train_reference(splits, cfg, dev)[0]),
        "large": (f"fast, batch {args.large_batch} (lr x"
                  f"{args.large_batch / base.base_batch_size:g}, warm-up {args.warmup:g} epochs)",
                  lambda cfg: train_backbone(
                      splits, dataclasses.replace(cfg, batch_size=args.large_batch,
                                                  warmup_epochs=args.warmup),
                      dev, quiet=True).model),
    }
    print(f"{splits.dataset}, {len(splits.labels['train'])} training images, {base.arch}, "
          f"{base.epochs} epochs, seeds {args.seeds}")
    for name, run in (runs[r] for r in args.runs):
        accs = []
        for seed in args.seeds:
            model = run(dataclasses.replace(base, seed=seed))
            accs.append(evaluate_images(model, splits, "test")["bacc"])
        print(f"  {name:<55} test balanced acc {np.mean(accs):.2f} ± {np.std(accs, ddof=1):.2f}"
              f"  ({', '.join(f'{a:.2f}' for a in accs)})", flush=True)


if __name__ == "__main__":
    main()
