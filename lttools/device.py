"""Device choice: `auto` is CUDA when present, else CPU."""
from __future__ import annotations

import torch

from lttools.errors import LTError


def resolve_device(name: str = "auto") -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if name.startswith("cuda") and not torch.cuda.is_available():
        raise LTError(f"device {name!r} requested but CUDA is not available; use 'auto' or 'cpu'")
    try:
        return torch.device(name)
    except RuntimeError as exc:
        raise LTError(f"unknown device {name!r}; use 'auto', 'cpu' or 'cuda[:N]'") from exc
