"""Reading the official CIFAR python pickles without running code from them.

A pickle can name any importable function and have it called while loading, so a file from
an untrusted source could run a command. The official files hold only dicts, lists,
strings, bytes and numpy arrays; this unpickler resolves just the globals those need and
refuses every other one.
"""
from __future__ import annotations

import codecs
import io
import pickle
from typing import Any

import numpy as np

from lttools.errors import LTError


def _reconstruct():
    try:
        from numpy._core.multiarray import _reconstruct as fn  # numpy >= 2
    except ImportError:  # pragma: no cover — numpy 1.x
        from numpy.core.multiarray import _reconstruct as fn
    return fn


ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy", "ndarray"): lambda: np.ndarray,
    ("numpy", "dtype"): lambda: np.dtype,
    ("_codecs", "encode"): lambda: codecs.encode,  # bytes written by Python 3 at protocol 2
}


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        make = ALLOWED.get((module, name))
        if make is None:
            raise pickle.UnpicklingError(
                f"refusing to load the global {module}.{name}: the official CIFAR files hold "
                "only dicts, lists, strings, bytes and numpy arrays")
        return make()


def load_arrays_pickle(data: bytes, source: str) -> dict:
    """Unpickle `data` (latin-1 strings, as the Python 2 files need) allowing only CIFAR's
    contents; anything else is an LTError naming `source`."""
    try:
        obj = _ArraysOnly(io.BytesIO(data), encoding="latin1").load()
    except Exception as exc:  # noqa: BLE001 — any failure means a bad or hostile file
        raise LTError(f"{source} is not a readable CIFAR python pickle: {exc}") from exc
    if not isinstance(obj, dict):
        raise LTError(f"{source} is not a CIFAR python pickle (it holds a "
                      f"{type(obj).__name__}, not a dict)")
    return obj
