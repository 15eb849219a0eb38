"""The packed image file (`data.pack: true`): every image of the prepared splits re-encoded
once as JPEG with its shorter side reduced to image_size * 256/224, stored back to back in one
HDF5 file (`<split>/bytes` uint8, `<split>/offsets` int64 [N + 1]). Loaders then read slices of
one file instead of opening one file per image, and decode smaller images."""
from __future__ import annotations

import math
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import h5py
import numpy as np

from lttools.atomic import atomic_path
from lttools.data.decode import EVAL_RESIZE, reencode
from lttools.data.prepared import SPLITS, FileSplits

CHUNK = 1 << 20
FLUSH = 32 << 20  # bytes gathered before an append to the file


def pack_side(image_size: int) -> int:
    return math.ceil(image_size * EVAL_RESIZE)


def _encode(args: tuple[str, int]) -> bytes:
    path, side = args
    return reencode(path, side)


def pack_images(splits: FileSplits, out: str | Path, workers: int = 0,
                quiet: bool = True) -> None:
    """Write the packed file atomically; memory stays bounded (results are streamed in order)."""
    from tqdm.auto import tqdm

    side = pack_side(splits.image_size)
    workers = workers or None
    total = sum(splits.size(s) for s in SPLITS)
    bar = tqdm(total=total, desc="packing images", unit="img", disable=quiet)
    with atomic_path(out) as tmp, h5py.File(tmp, "w") as f, \
            ProcessPoolExecutor(workers) as pool:
        f.attrs["shorter_side"] = side
        for s in SPLITS:
            data = f.create_dataset(f"{s}/bytes", shape=(0,), maxshape=(None,), dtype=np.uint8,
                                    chunks=(CHUNK,))
            offsets, pending = [0], bytearray()

            def flush() -> None:
                start = len(data)
                data.resize((start + len(pending),))
                data[start:] = np.frombuffer(bytes(pending), np.uint8)
                pending.clear()

            jobs = [(str(Path(splits.root) / p), side) for p in splits.paths[s]]
            for blob in pool.map(_encode, jobs, chunksize=32):
                pending += blob
                offsets.append(offsets[-1] + len(blob))
                bar.update(1)
                if len(pending) >= FLUSH:
                    flush()
            flush()
            f.create_dataset(f"{s}/offsets", data=np.asarray(offsets, np.int64))
    bar.close()


class PackedReader:
    """Reads one image's bytes; opens the file lazily, once per process (DataLoader workers
    each get their own handle)."""

    def __init__(self, path: str | Path, split: str):
        self.path, self.split = str(path), split
        self._file: h5py.File | None = None
        self._offsets: np.ndarray | None = None

    def __getstate__(self):
        return {"path": self.path, "split": self.split, "_file": None, "_offsets": None}

    def __call__(self, index: int) -> bytes:
        if self._file is None:
            self._file = h5py.File(self.path, "r")
            self._offsets = self._file[f"{self.split}/offsets"][()]
        start, end = self._offsets[index], self._offsets[index + 1]
        return self._file[f"{self.split}/bytes"][start:end].tobytes()
