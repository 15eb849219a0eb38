"""Run the frozen backbone (eval mode: BatchNorm statistics fixed) over every split once and
stream the penultimate features into the feature store."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

import torch
from tqdm.auto import tqdm

from lttools.backbone.saved import SavedBackbone
from lttools.data.augment import random_crop_flip
from lttools.data.prepared import Splits
from lttools.errors import LTError, check_range
from lttools.features import DTYPES, FeatureBatch, StoreLayout, write_store
from lttools.head_fit import HeadFit
from lttools.head_fit import fit_head as fit_head_on
from lttools.provenance import sha256_file
from lttools.models import NormalizedBackbone


@dataclass(frozen=True)
class ExtractConfig:
    views: int = 2  # augmented views of each training image, besides the clean one
    flip_test: bool = True
    batch_size: int = 512
    crop_pad: int = 4
    dtype: str = "float32"
    seed: int = 0
    device: str = "auto"
    # a head fitted on the clean training features, for a backbone that has none (see head_fit)
    head_epochs: int = 30
    head_lr: float = 0.1
    head_weight_decay: float = 5e-4
    head_batch_size: int = 256

    def validate(self) -> None:
        HeadFit(self.head_epochs, self.head_lr, self.head_weight_decay,
                self.head_batch_size).validate("features")
        if self.dtype not in DTYPES:
            raise LTError(f"features.dtype = {self.dtype!r} is not valid; choose one of "
                          f"{', '.join(DTYPES)}")
        check_range("features.views", self.views, low=0)
        check_range("features.batch_size", self.batch_size, low=1)
        check_range("features.crop_pad", self.crop_pad, low=0)


def _feature_batches(model: NormalizedBackbone, splits: Splits, cfg: ExtractConfig,
                     quiet: bool) -> Iterator[FeatureBatch]:
    dev = next(model.parameters()).device
    plan = [("train", 0, "clean")] + [("train", v, "augmented") for v in range(1, cfg.views + 1)]
    plan += [("val", 0, "clean"), ("test", 0, "clean")]
    if cfg.flip_test:  # validation is scored as test is: both get the flipped view
        plan += [("val", 1, "flipped"), ("test", 1, "flipped")]
    total = sum(len(splits.labels[s]) for s, _, _ in plan)
    bar = tqdm(total=total, desc="features", unit="img", disable=quiet)
    model.eval()
    with torch.no_grad():
        for split, view, kind in plan:
            gen = torch.Generator().manual_seed(cfg.seed * 1_000_003 + view)
            images = splits.images[split]
            for i in range(0, len(images), cfg.batch_size):
                x = torch.from_numpy(images[i:i + cfg.batch_size]).to(dev)
                if kind == "augmented":
                    x = random_crop_flip(x, cfg.crop_pad, gen, flip=True)
                elif kind == "flipped":
                    x = x.flip(3)
                yield split, view, i, model.features(x).float().cpu().numpy()
                bar.update(len(x))
    bar.close()


def extract_to_store(saved: SavedBackbone, splits: Splits, checkpoint: str | Path,
                     out: str | Path, cfg: ExtractConfig, quiet: bool = False) -> None:
    """Every split through the frozen backbone into the store at `out`. A backbone without a
    head for these classes gets one fitted on the clean training features (cfg.head_*)."""
    cfg.validate()
    model = saved.model
    fitted = saved.head == "missing"
    layout = StoreLayout(
        labels=splits.labels,
        views={"train": 1 + cfg.views, "val": 2 if cfg.flip_test else 1,
               "test": 2 if cfg.flip_test else 1},
        head_weight=None if fitted else model.fc.weight.detach().cpu().numpy(),
        head_bias=None if fitted else model.fc.bias.detach().cpu().numpy(),
        class_counts=splits.class_counts, feature_dim=model.feature_dim)
    meta = {k: v for k, v in splits.meta.items() if k != "seed"}
    attrs = {**meta, "data_seed": splits.meta.get("seed", 0), "arch": model.arch_name,
             "checkpoint_sha256": sha256_file(checkpoint), "views": cfg.views,
             "torch_version": torch.__version__.split("+")[0],
             "head_source": {"trained": "stage 1", "checkpoint": "the imported checkpoint"}.get(
                 saved.head, "fitted"),
             "normalization": json.dumps({"mean": model.mean.flatten().tolist(),
                                          "std": model.std.flatten().tolist(),
                                          **saved.notes}, sort_keys=True)}
    fit = HeadFit(cfg.head_epochs, cfg.head_lr, cfg.head_weight_decay, cfg.head_batch_size,
                  cfg.seed)

    def fit_head(features, labels):
        return fit_head_on(torch.from_numpy(features), torch.from_numpy(labels),
                           splits.num_classes, fit, next(model.parameters()).device)

    write_store(out, layout, attrs, _feature_batches(model, splits, cfg, quiet), cfg.dtype,
                fit_head=fit_head if fitted else None)
