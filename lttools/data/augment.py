"""Batched image augmentation as tensor ops (no per-image Python loop): random crop with
zero padding, and horizontal flip. Works on whichever device the batch lives on.

The random draws are separate from applying them, so a training loop can draw a whole
epoch's crops and flips on the CPU (a seeded generator, the same numbers on every device) and
move them to the GPU in one copy instead of waiting on a copy every step.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import torch


@dataclass(frozen=True)
class CropFlip:
    """Per-image crop offsets (oy, ox in [0, 2*pad]) and flip flags, each [B]."""
    oy: torch.Tensor | None
    ox: torch.Tensor | None
    flip: torch.Tensor | None

    def _map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> "CropFlip":
        return CropFlip(*(None if t is None else fn(t) for t in (self.oy, self.ox, self.flip)))

    def to(self, device: torch.device | str) -> "CropFlip":
        return self._map(lambda t: t.to(device))

    def __getitem__(self, s: slice) -> "CropFlip":
        return self._map(lambda t: t[s])

    @staticmethod
    def cat(parts: list["CropFlip"]) -> "CropFlip":
        def join(ts):
            return None if not ts or ts[0] is None else torch.cat(ts)
        return CropFlip(join([p.oy for p in parts]), join([p.ox for p in parts]),
                        join([p.flip for p in parts]))


def draw_crop_flip(b: int, pad: int, generator: torch.Generator | None = None,
                   flip: bool = True) -> CropFlip:
    """The random draws of `b` images, on the CPU, in a fixed order (oy, ox, flip)."""
    oy = ox = mask = None
    if pad > 0:
        oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device="cpu")
        ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device="cpu")
    if flip:
        mask = torch.rand(b, generator=generator, device="cpu") < 0.5
    return CropFlip(oy, ox, mask)


def apply_crop_flip(x: torch.Tensor, pad: int, draws: CropFlip) -> torch.Tensor:
    """x: [B, C, H, W]; `draws` on x's device (or the CPU for a CPU batch)."""
    b, c, h, w = x.shape
    dev = x.device
    if pad > 0:
        padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        rows = (draws.oy[:, None] + torch.arange(h, device=dev))[:, :, None]  # [B, H, 1]
        cols = (draws.ox[:, None] + torch.arange(w, device=dev))[:, None, :]  # [B, 1, W]
        bi = torch.arange(b, device=dev)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[bi, rows, cols].permute(0, 3, 1, 2)  # [B, C, H, W]
    if draws.flip is not None:
        x = torch.where(draws.flip[:, None, None, None], x.flip(3), x)
    return x.contiguous()


def random_crop_flip(x: torch.Tensor, pad: int, generator: torch.Generator | None = None,
                     flip: bool = True) -> torch.Tensor:
    """x: [B, C, H, W]. Each image gets its own crop offset and flip, drawn from `generator`."""
    draws = draw_crop_flip(len(x), pad, generator, flip).to(x.device)
    return apply_crop_flip(x, pad, draws)
