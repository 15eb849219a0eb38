"""Stage-1 evaluation on the prepared splits (arrays, or image files through loader workers),
and the training set's channel statistics."""
from __future__ import annotations

from typing import Iterator

import numpy as np
import torch

from lttools.data.loader import EpochBatches, ImageFiles, default_workers, keyed_batches, make_loader
from lttools.data.longtail import FEW_BELOW, MANY_ABOVE
from lttools.data.prepared import AnySplits, FileSplits
from lttools.metrics import LogitStats

STATS_SAMPLE = 1000  # images whose pixels give the channel statistics of an image-file dataset


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = images.double()
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-6)
    return mean.float(), std.float()


def eval_batches(splits: AnySplits, split: str, batch_size: int = 256, workers: int | None = None,
                 flip: bool = False, pin: bool = False) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """(uint8 images, labels) of a split in order, eval crop (mirrored when `flip`)."""
    if isinstance(splits, FileSplits):
        sampler = EpochBatches()
        sampler.batches = keyed_batches(range(splits.size(split)), 0, batch_size)
        workers = default_workers() if workers is None else workers
        yield from make_loader(ImageFiles(splits, split, train=False, flip=flip), sampler,
                               workers, pin)
        return
    images, labels = torch.from_numpy(splits.images[split]), torch.from_numpy(splits.labels[split])
    for i in range(0, len(labels), batch_size):
        x = images[i:i + batch_size]
        yield (x.flip(3) if flip else x), labels[i:i + batch_size]


def train_sample(splits: AnySplits) -> torch.Tensor:
    """The training images the channel statistics are computed on: all of an array dataset;
    an evenly spaced sample of STATS_SAMPLE of an image-file dataset (eval crops)."""
    if not isinstance(splits, FileSplits):
        return torch.from_numpy(splits.images["train"])
    n = splits.size("train")
    pick = np.unique(np.linspace(0, n - 1, min(n, STATS_SAMPLE)).round().astype(int))
    files = ImageFiles(splits, "train", train=False)
    return torch.stack([files[int(i)][0] for i in pick])


@torch.no_grad()
def evaluate_images(model: torch.nn.Module, splits: AnySplits, split: str,
                    workers: int | None = None) -> dict[str, float]:
    model.eval()
    dev = next(model.parameters()).device
    stats = LogitStats((), splits.num_classes)
    for x, y in eval_batches(splits, split, workers=workers):
        x = x.to(dev).contiguous(memory_format=torch.channels_last)  # as the model is trained
        stats.update(model(x).float().cpu(), y)
    summary = stats.summary(splits.class_counts, splits.meta.get("many_above", MANY_ABOVE),
                            splits.meta.get("few_below", FEW_BELOW))
    return {k: float(v) for k, v in summary.items()}
