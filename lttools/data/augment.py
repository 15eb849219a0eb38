"""Batched image augmentation as tensor ops (no per-image Python loop): random crop with
zero padding, and horizontal flip. Works on whichever device the batch lives on."""
from __future__ import annotations

import torch


def random_crop_flip(x: torch.Tensor, pad: int, generator: torch.Generator | None = None,
                     flip: bool = True) -> torch.Tensor:
    """x: [B, C, H, W]. Each image gets its own crop offset and flip, drawn from `generator`."""
    b, c, h, w = x.shape
    dev = x.device
    if pad > 0:
        padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
        oy = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device="cpu").to(dev)
        ox = torch.randint(0, 2 * pad + 1, (b,), generator=generator, device="cpu").to(dev)
        rows = (oy[:, None] + torch.arange(h, device=dev))[:, :, None]  # [B, H, 1]
        cols = (ox[:, None] + torch.arange(w, device=dev))[:, None, :]  # [B, 1, W]
        bi = torch.arange(b, device=dev)[:, None, None]
        x = padded.permute(0, 2, 3, 1)[bi, rows, cols].permute(0, 3, 1, 2)  # [B, C, H, W]
    if flip:
        mask = torch.rand(b, generator=generator, device="cpu").to(dev) < 0.5
        x = torch.where(mask[:, None, None, None], x.flip(3), x)
    return x.contiguous()
