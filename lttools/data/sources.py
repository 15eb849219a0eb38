"""Raw datasets as uint8 NCHW arrays: Fashion-MNIST (idx files), CIFAR-10/100 (python pickles).

No network unless the caller passes download=True.
"""
from __future__ import annotations

import gzip
import hashlib
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np

from lttools.data.safe_pickle import load_arrays_pickle
from lttools.errors import LTError, unknown_name

# Debian's package dataset-fashion-mnist; the variable points elsewhere (tests: nowhere)
DEBIAN_FASHION_MNIST = Path(os.environ.get("LTTOOLS_SYSTEM_FASHION_MNIST",
                                           "/usr/share/datasets/fashion-mnist"))
FASHION_FILES = {
    "train_x": "train-images-idx3-ubyte.gz",
    "train_y": "train-labels-idx1-ubyte.gz",
    "test_x": "t10k-images-idx3-ubyte.gz",
    "test_y": "t10k-labels-idx1-ubyte.gz",
}


@dataclass
class RawDataset:
    name: str
    num_classes: int
    train_x: np.ndarray  # uint8 [N, C, H, W]
    train_y: np.ndarray  # int64 [N]
    test_x: np.ndarray
    test_y: np.ndarray
    source: str = ""  # the folder the files were read from
    sha256: dict[str, str] = field(default_factory=dict)  # file name -> sha256 of its bytes


def _read(path: Path, hashes: dict[str, str]) -> bytes:
    """A raw file's bytes; its sha256 is recorded in `hashes`, so another copy of a dataset
    shows up as a change."""
    data = path.read_bytes()
    hashes[path.name] = hashlib.sha256(data).hexdigest()
    return data


def _read_idx(path: Path, hashes: dict[str, str]) -> np.ndarray:
    data = _read(path, hashes)
    if path.suffix == ".gz":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError) as exc:
            raise LTError(f"{path} is not a readable gzip file ({exc}); replace it with the "
                          "official one") from exc
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise LTError(f"{path} is not an unsigned-byte idx file (bad magic number)")
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    body = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if body.size != int(np.prod(shape)):
        raise LTError(f"{path} is truncated: header says {shape}, found {body.size} bytes")
    return body.reshape(shape)


def _fashion_dir(root: Path | None) -> Path | None:
    candidates = []
    if root is not None:
        candidates += [root, root / "fashion-mnist", root / "FashionMNIST" / "raw"]
    candidates.append(DEBIAN_FASHION_MNIST)
    for d in candidates:
        if all((d / f).exists() for f in FASHION_FILES.values()):
            return d
    return None


def load_fashion_mnist(root: Path | None, download: bool) -> RawDataset:
    d = _fashion_dir(root)
    if d is None and download:
        from torchvision.datasets import FashionMNIST

        target = (root or Path("data/raw"))
        FashionMNIST(str(target), train=True, download=True)
        FashionMNIST(str(target), train=False, download=True)
        d = _fashion_dir(target)
    if d is None:
        raise LTError(
            "Fashion-MNIST not found. Any one of these fixes it: (1) put the four "
            f"{'/'.join(FASHION_FILES.values())} files in data.root (now {root}); "
            "(2) `apt-get install dataset-fashion-mnist` (puts them in "
            f"{DEBIAN_FASHION_MNIST}); (3) set data.download: true to fetch them with torchvision.")
    hashes: dict[str, str] = {}
    arrays = {k: _read_idx(d / f, hashes) for k, f in FASHION_FILES.items()}
    return RawDataset("fashion_mnist", 10,
                      arrays["train_x"][:, None], arrays["train_y"].astype(np.int64),
                      arrays["test_x"][:, None], arrays["test_y"].astype(np.int64),
                      source=str(d), sha256=hashes)


def _cifar_arrays(files: list[Path], label_key: str,
                  hashes: dict[str, str]) -> tuple[np.ndarray, np.ndarray]:
    xs, ys = [], []
    for f in files:
        batch = load_arrays_pickle(_read(f, hashes), str(f))
        try:
            xs.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.append(np.asarray(batch[label_key], dtype=np.int64))
        except (KeyError, ValueError) as exc:
            raise LTError(f"{f} is not an official CIFAR batch (no usable 'data' / "
                          f"'{label_key}': {exc})") from exc
    return np.concatenate(xs), np.concatenate(ys)


def load_cifar(name: str, root: Path | None, download: bool) -> RawDataset:
    folder, train_files, test_files, label_key, k = {
        "cifar10": ("cifar-10-batches-py", [f"data_batch_{i}" for i in range(1, 6)],
                    ["test_batch"], "labels", 10),
        "cifar100": ("cifar-100-python", ["train"], ["test"], "fine_labels", 100),
    }[name]
    root = root or Path("data/raw")
    d = root / folder
    if not d.is_dir() and download:
        from torchvision import datasets

        cls = datasets.CIFAR10 if name == "cifar10" else datasets.CIFAR100
        cls(str(root), train=True, download=True)
    missing = [f for f in train_files + test_files if not (d / f).exists()]
    if missing:
        raise LTError(f"{name} not found: {d} lacks {', '.join(missing)}. Put the official python "
                      f"version ('{folder}/') under data.root (now {root}), or set "
                      "data.download: true to fetch it with torchvision.")
    hashes: dict[str, str] = {}
    train_x, train_y = _cifar_arrays([d / f for f in train_files], label_key, hashes)
    test_x, test_y = _cifar_arrays([d / f for f in test_files], label_key, hashes)
    return RawDataset(name, k, train_x, train_y, test_x, test_y, source=str(d), sha256=hashes)


LOADERS: dict[str, Callable[[Path | None, bool], RawDataset]] = {
    "fashion_mnist": load_fashion_mnist,
    "cifar10": lambda root, download: load_cifar("cifar10", root, download),
    "cifar100": lambda root, download: load_cifar("cifar100", root, download),
}


def load_raw(name: str, root: str | Path | None = None, download: bool = False) -> RawDataset:
    if name not in LOADERS:
        raise unknown_name("dataset", name, list(LOADERS))
    return LOADERS[name](Path(root) if root else None, download)
