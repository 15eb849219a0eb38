"""Image files into batches: a Dataset whose items are decoded and cropped in DataLoader
worker processes (lttools.data.decode), batches of uint8 tensors in pinned memory, and
persistent workers fed by a batch sampler that the training loop points at each epoch."""
from __future__ import annotations

import os
from pathlib import Path
from typing import Iterable, Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from lttools.data.decode import load_crop, sample_rng
from lttools.data.packed import PackedReader
from lttools.data.prepared import FileSplits
from lttools.errors import LTError

Key = tuple[int, int]  # (stream: the epoch or the view, index)


def default_workers() -> int:
    return max(1, min(os.cpu_count() or 1, 16))


class ImageFiles(Dataset):
    """(stream, index) -> (uint8 [3, S, S], label). `train`: a random resized crop and flip
    drawn from the key's own generator; else the eval centre crop (mirrored when `flip`)."""

    def __init__(self, splits: FileSplits, split: str, train: bool, seed: int = 0,
                 flip: bool = False):
        self.root, self.paths = Path(splits.root), splits.paths[split]
        self.labels = torch.from_numpy(splits.labels[split])
        self.size, self.train, self.seed, self.flip = splits.image_size, train, seed, flip
        self.packed = PackedReader(splits.packed, split) if splits.packed else None

    def __len__(self) -> int:
        return len(self.paths)

    def index_and_rng(self, key: Key | int) -> tuple[int, np.random.Generator | None]:
        """The sample's index, and (for training crops) the generator its key seeds."""
        stream, i = key if isinstance(key, tuple) else (0, key)
        return i, sample_rng(self.seed, stream, i) if self.train else None

    def __getitem__(self, key: Key | int):
        i, rng = self.index_and_rng(key)
        source = self.packed(i) if self.packed is not None else self.root / self.paths[i]
        try:
            x = load_crop(source, self.size, self.train, rng, self.flip)
        except Exception as exc:  # noqa: BLE001 — a file damaged after prepare_data checked it
            raise LTError(f"{self.root / self.paths[i]} cannot be decoded ({type(exc).__name__}: "
                          f"{exc}); fix or remove it and re-run `dvc repro prepare_data`") from exc
        return torch.from_numpy(x), self.labels[i]


class EpochBatches:
    """A batch sampler whose batches are set from outside before each pass."""

    def __init__(self):
        self.batches: list[list[Key]] = []

    def __iter__(self) -> Iterator[list[Key]]:
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def make_loader(dataset: ImageFiles, sampler: EpochBatches, workers: int, pin: bool,
                collate_fn=None) -> DataLoader:
    return DataLoader(dataset, batch_sampler=sampler, num_workers=workers, pin_memory=pin,
                      persistent_workers=workers > 0, prefetch_factor=4 if workers else None,
                      collate_fn=collate_fn)


def keyed_batches(indices: Iterable[int], stream: int, batch_size: int) -> list[list[Key]]:
    keys = [(stream, int(i)) for i in indices]
    return [keys[i:i + batch_size] for i in range(0, len(keys), batch_size)]
