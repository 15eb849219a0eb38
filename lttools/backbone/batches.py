"""Where stage 1's training batches come from, one global batch per step, each process
keeping its shard (lttools.backbone.distributed).

- ResidentBatches (the fast path for array datasets): every image held on the training device
  as one uint8 tensor, a seeded permutation per epoch, crop + flip as batched tensor ops, the
  whole epoch's draws copied to the device at once;
- StreamedBatches (image files): the same seeded permutation; each process's shard decoded and
  cropped by DataLoader workers (lttools.data.loader) into pinned uint8 batches. The crops are
  drawn per sample from (seed, epoch, index), so workers, batch boundaries and resumption do
  not change them.

Both draw the permutation from the training generator, whose state the checkpoint keeps.
"""
from __future__ import annotations

from typing import Iterator

import torch

from lttools.backbone.config import BackboneConfig
from lttools.backbone.distributed import DistContext
from lttools.data.augment import CropFlip, apply_crop_flip, draw_crop_flip
from lttools.data.loader import EpochBatches, ImageFiles, default_workers, keyed_batches, make_loader
from lttools.data.prepared import AnySplits, FileSplits, Splits


def epoch_batches(n: int, batch_size: int, world_size: int = 1) -> list[tuple[int, int]]:
    """(start, size) of each step's global batch in an epoch's permutation. Under torchrun a
    last, short batch is cut to a multiple of the world size (equal shards); a batch of one
    image is skipped (BatchNorm cannot train on it)."""
    out = []
    for start in range(0, n, batch_size):
        size = min(batch_size, n - start)
        size -= size % world_size
        if size >= 2:
            out.append((start, size))
    return out


class ResidentBatches:
    def __init__(self, splits: Splits, cfg: BackboneConfig, dev: torch.device, ctx: DistContext):
        self.x = torch.from_numpy(splits.images["train"]).to(dev)
        self.y = torch.from_numpy(splits.labels["train"]).to(dev)
        self.cfg, self.dev, self.ctx = cfg, dev, ctx
        self.steps = epoch_batches(len(self.y), cfg.batch_size, ctx.world_size)

    def epoch(self, epoch: int, gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        cfg, ctx = self.cfg, self.ctx
        perm = torch.randperm(len(self.y), generator=gen).to(self.dev)
        # The epoch's crops and flips, drawn on the CPU in the same order as batch by batch,
        # reach the device in one copy: nothing inside the loop waits on the host.
        draws = CropFlip.cat([draw_crop_flip(size, cfg.crop_pad, gen, cfg.flip)
                              for _, size in self.steps]).to(self.dev)
        drawn = 0
        for first, size in self.steps:
            idx = perm[first:first + size]
            # augmentation of the whole global batch, identical on every rank
            xb = apply_crop_flip(self.x[idx], cfg.crop_pad, draws[drawn:drawn + size])
            drawn += size
            yield ctx.shard(xb), ctx.shard(self.y[idx])


class StreamedBatches:
    def __init__(self, splits: FileSplits, cfg: BackboneConfig, dev: torch.device,
                 ctx: DistContext):
        self.cfg, self.dev, self.ctx = cfg, dev, ctx
        self.n = splits.size("train")
        self.steps = epoch_batches(self.n, cfg.batch_size, ctx.world_size)
        self.sampler = EpochBatches()
        workers = cfg.workers or default_workers()
        self.size = splits.image_size
        if cfg.gpu_decode:  # workers read bytes and draw crops; the GPU decodes
            from lttools.data.gpu_decode import EncodedImageFiles, collate
            files, fn = EncodedImageFiles(splits, "train", train=True, seed=cfg.seed), collate
        else:
            files, fn = ImageFiles(splits, "train", train=True, seed=cfg.seed), None
        self.loader = make_loader(files, self.sampler, workers, pin=dev.type == "cuda",
                                  collate_fn=fn)

    def epoch(self, epoch: int, gen: torch.Generator) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
        perm = torch.randperm(self.n, generator=gen)
        shards = []
        for first, size in self.steps:
            mine = self.ctx.shard(perm[first:first + size])
            shards += keyed_batches(mine.tolist(), epoch, len(mine))
        self.sampler.batches = shards
        if self.cfg.gpu_decode:
            from lttools.data.gpu_decode import decode_batch
            for payloads, boxes, flips, yb in self.loader:
                yield (decode_batch(payloads, boxes, flips, self.size, self.dev),
                       yb.to(self.dev, non_blocking=True))
            return
        for xb, yb in self.loader:
            yield xb.to(self.dev, non_blocking=True), yb.to(self.dev, non_blocking=True)


def batch_source(splits: AnySplits, cfg: BackboneConfig, dev: torch.device, ctx: DistContext):
    if isinstance(splits, FileSplits):
        return StreamedBatches(splits, cfg, dev, ctx)
    return ResidentBatches(splits, cfg, dev, ctx)
