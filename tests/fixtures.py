"""Miniature datasets in the exact on-disk formats, and small feature stores."""
from __future__ import annotations

import gzip
import pickle
from pathlib import Path

import numpy as np

from lttools.features.store import StoreLayout, write_store


def write_idx(path: Path, arr: np.ndarray) -> None:
    header = bytes([0, 0, 0x08, arr.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in arr.shape)
    with gzip.open(path, "wb") as f:
        f.write(header + arr.astype(np.uint8).tobytes())


def class_images(labels: np.ndarray, shape: tuple[int, ...], seed: int = 0) -> np.ndarray:
    """Learnable images: each class a distinct brightness pattern plus noise."""
    rng = np.random.RandomState(seed)
    k = int(labels.max()) + 1
    protos = rng.randint(0, 256, size=(k,) + shape)
    noise = rng.randint(-40, 41, size=(len(labels),) + shape)
    return np.clip(protos[labels] + noise, 0, 255).astype(np.uint8)


def make_fashion_mnist(root: Path, per_class: int = 60, test_per_class: int = 20) -> Path:
    """The four Fashion-MNIST idx.gz files, 28x28, 10 classes, labels interleaved as in the real file."""
    root.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", per_class), ("t10k", test_per_class)):
        labels = np.tile(np.arange(10), n).astype(np.uint8)
        write_idx(root / f"{prefix}-images-idx3-ubyte.gz", class_images(labels, (28, 28)))
        write_idx(root / f"{prefix}-labels-idx1-ubyte.gz", labels)
    return root


def make_cifar(root: Path, name: str, per_class: int = 30, test_per_class: int = 5) -> Path:
    """The official python-pickle layout: cifar-10-batches-py/ or cifar-100-python/."""
    k, folder, key = (10, "cifar-10-batches-py", "labels") if name == "cifar10" else \
        (100, "cifar-100-python", "fine_labels")
    d = root / folder
    d.mkdir(parents=True, exist_ok=True)
    labels = np.tile(np.arange(k), per_class)
    data = class_images(labels, (3, 32, 32)).reshape(len(labels), -1)
    test_labels = np.tile(np.arange(k), test_per_class)
    test = class_images(test_labels, (3, 32, 32), seed=1).reshape(len(test_labels), -1)

    def dump(fname, x, y):
        with open(d / fname, "wb") as f:
            pickle.dump({"data": x, key: list(map(int, y)), "batch_label": fname}, f, protocol=2)

    if name == "cifar10":
        for i, part in enumerate(np.array_split(np.arange(len(labels)), 5), start=1):
            dump(f"data_batch_{i}", data[part], labels[part])
        dump("test_batch", test, test_labels)
    else:
        dump("train", data, labels)
        dump("test", test, test_labels)
    return root


def gaussian_features(k: int = 5, d: int = 8, counts=(60, 30, 15, 8, 4), n_val: int = 10,
                      n_test: int = 20, seed: int = 0, views: int = 2):
    """Class-mean Gaussian features with a long-tailed training set."""
    rng = np.random.RandomState(seed)
    means = rng.randn(k, d) * 2.0
    def draw(lbl):
        return (means[lbl] + rng.randn(len(lbl), d)).astype(np.float32)
    y_train = np.repeat(np.arange(k), counts[:k])
    y_val = np.repeat(np.arange(k), n_val)
    y_test = np.repeat(np.arange(k), n_test)
    train = np.stack([draw(y_train) for _ in range(1 + views)])
    return {"train": (train, y_train), "val": (draw(y_val)[None], y_val),
            "test": (draw(y_test)[None], y_test), "k": k, "d": d,
            "w": (rng.randn(k, d) * 0.1).astype(np.float32), "b": np.zeros(k, np.float32)}


def write_gaussian_store(path: Path, views: int = 2, attrs: dict | None = None,
                         dtype: str = "float32", **kw) -> Path:
    g = gaussian_features(views=views, **kw)
    layout = StoreLayout(labels={s: g[s][1] for s in ("train", "val", "test")},
                         views={s: g[s][0].shape[0] for s in ("train", "val", "test")},
                         head_weight=g["w"], head_bias=g["b"],
                         class_counts=np.bincount(g["train"][1], minlength=g["k"]),
                         feature_dim=g["d"])
    batches = [(s, v, 0, g[s][0][v]) for s in ("train", "val", "test")
               for v in range(g[s][0].shape[0])]
    write_store(path, layout, {"dataset": "toy", "arch": "none", "views": views,
                               "imb_ratio": 15.0, **(attrs or {})}, batches, dtype)
    return path


MODES = ("RGB", "L", "RGBA", "P", "CMYK")


def write_image(path: Path, label: int, index: int, mode: str, size: tuple[int, int]) -> None:
    """A small image whose colour says its class, in the given mode, as JPEG or PNG."""
    from PIL import Image

    rng = np.random.RandomState(1000 * label + index)
    base = np.array([(label * 67) % 256, (label * 131 + 60) % 256, (label * 29 + 120) % 256])
    pixels = np.clip(base[None, None] + rng.randint(-30, 31, (size[1], size[0], 3)), 0, 255)
    img = Image.fromarray(pixels.astype(np.uint8), "RGB")
    img = img.convert("RGBA") if mode == "RGBA" else img.convert(mode)
    path.parent.mkdir(parents=True, exist_ok=True)
    if mode in ("RGBA", "P"):
        img.save(path.with_suffix(".png"))
    else:
        img.save(path.with_suffix(".jpg"), quality=90)


def _image_entries(per_class, prefix: str, seed: int):
    """(relative stem, label, mode, size) of each image: modes cycle, sizes vary."""
    out = []
    for label, n in enumerate(per_class):
        for i in range(n):
            mode = MODES[(i + label) % len(MODES)]
            size = (20 + (7 * i + 3 * label + seed) % 29, 18 + (5 * i + label + seed) % 31)
            out.append((f"{prefix}/c{label}/img{i:04d}", label, mode, size))
    return out


def make_image_folder(root: Path, train=(40, 20, 10, 6), test=8, val: int | None = None) -> Path:
    """The ImageFolder layout root/{train,val,test}/<class>/<image>, mixed sizes and modes."""
    splits = {"train": train, "test": (test,) * len(train)}
    if val:
        splits["val"] = (val,) * len(train)
    for split, counts in splits.items():
        for stem, label, mode, size in _image_entries(counts, split, seed=len(split)):
            write_image(root / stem, label, int(stem[-4:]), mode, size)
    return root


def make_image_lists(root: Path, lists: Path, train=(40, 20, 10, 6), test=8,
                     val: int | None = 4) -> dict[str, Path]:
    """Images under root/images/ and list files of `relative/path label` lines."""
    out = {}
    splits = {"train": train, "test": (test,) * len(train)}
    if val:
        splits["val"] = (val,) * len(train)
    lists.mkdir(parents=True, exist_ok=True)
    for split, counts in splits.items():
        lines = []
        for stem, label, mode, size in _image_entries(counts, f"images/{split}", len(split)):
            write_image(root / stem, label, int(stem[-4:]), mode, size)
            suffix = ".png" if mode in ("RGBA", "P") else ".jpg"
            lines.append(f"{stem}{suffix} {label}")
        out[split] = lists / f"{split}.txt"
        out[split].write_text("\n".join(lines) + "\n")
    return out
