"""Data-parallel training launched by torchrun: process group set-up, the rank's shard of
each global batch, and BatchNorm whose statistics span all ranks.

Every rank draws the same global permutation and the same augmentation (one shared seed),
then keeps its own contiguous slice of each global batch; DistributedDataParallel averages
the gradients. With `sync_bn` the result equals a single process with the same global batch.
"""
from __future__ import annotations

import os
import warnings
from dataclasses import dataclass

import torch
import torch.distributed as dist
from torch import nn

from lttools.errors import LTError


@dataclass(frozen=True)
class DistContext:
    rank: int = 0
    world_size: int = 1
    local_rank: int = 0

    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world_size > 1

    def shard(self, batch: torch.Tensor) -> torch.Tensor:
        """This rank's contiguous slice of a global batch (whose size divides evenly)."""
        per = len(batch) // self.world_size
        return batch[self.rank * per:(self.rank + 1) * per]

    def barrier(self) -> None:
        if self.active:
            dist.barrier()

    def sum(self, values: list[float], device: torch.device) -> list[float]:
        if not self.active:
            return values
        t = torch.tensor(values, dtype=torch.float64, device=device)
        dist.all_reduce(t)
        return t.tolist()


def launched_rank() -> int:
    """This process's rank under torchrun (0 when not launched by it), before any set-up."""
    return int(os.environ.get("RANK", "0"))


def init_distributed(device: torch.device, global_batch: int | None = None) -> DistContext:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1); else one process.
    A global batch (stage 1) must divide by the number of processes."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistContext()
    if global_batch is not None and global_batch % world:
        raise LTError(f"backbone.batch_size = {global_batch} is the global batch and must be "
                      f"divisible by the number of processes ({world}); valid: a multiple of "
                      f"{world}")
    ctx = DistContext(launched_rank(), world, int(os.environ.get("LOCAL_RANK", "0")))
    if not dist.is_initialized():
        dist.init_process_group("nccl" if device.type == "cuda" else "gloo")
    return ctx


def close_distributed(ctx: DistContext) -> None:
    if ctx.active and dist.is_initialized():
        dist.destroy_process_group()


def all_reduce(t: torch.Tensor) -> torch.Tensor:
    """Differentiable sum over ranks (its backward sums the gradients over ranks too)."""
    from torch.distributed.nn.functional import all_reduce as differentiable_all_reduce

    with warnings.catch_warnings():  # deprecated in favour of a private API; still correct
        warnings.simplefilter("ignore", FutureWarning)
        return differentiable_all_reduce(t)


class GlobalBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d whose batch statistics are summed over all ranks with a differentiable
    all-reduce; works on any backend (gloo on CPU too, unlike torch's SyncBatchNorm)."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not (self.training and dist.is_available() and dist.is_initialized()
                and dist.get_world_size() > 1):
            return super().forward(x)
        c = self.num_features
        xf = x if x.dtype == torch.float64 else x.float()
        # two passes (mean, then centred squares) for the numerical stability of one process
        sums = all_reduce(torch.cat([xf.sum((0, 2, 3)), xf.new_tensor([x.numel() / c])]))
        count = sums[-1]
        mean = sums[:c] / count
        centred = xf - mean[None, :, None, None]
        var = all_reduce((centred * centred).sum((0, 2, 3))) / count
        with torch.no_grad():
            m = self.momentum
            self.running_mean.mul_(1 - m).add_(m * mean.detach())
            self.running_var.mul_(1 - m).add_(m * var.detach() * count / (count - 1))
            self.num_batches_tracked.add_(1)
        y = centred * torch.rsqrt(var + self.eps)[None, :, None, None]
        return (y * self.weight[None, :, None, None] + self.bias[None, :, None, None]).to(x.dtype)


def convert_batchnorm(model: nn.Module, device: torch.device | None = None) -> nn.Module:
    """Make every BatchNorm2d use statistics over all ranks (same parameter names): torch's
    SyncBatchNorm on CUDA (NCCL), GlobalBatchNorm2d elsewhere (SyncBatchNorm refuses CPU)."""
    if device is not None and device.type == "cuda":
        return nn.SyncBatchNorm.convert_sync_batchnorm(model)
    for name, child in model.named_children():
        if type(child) is nn.BatchNorm2d:
            new = GlobalBatchNorm2d(child.num_features, child.eps, child.momentum).to(
                child.weight.device)
            new.load_state_dict(child.state_dict())
            setattr(model, name, new)
        else:
            convert_batchnorm(child)
    return model


def process_device(device: torch.device, ctx: DistContext) -> torch.device:
    """Under torchrun on CUDA, each process uses the GPU of its local rank."""
    if ctx.active and device.type == "cuda":
        device = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(device)
    return device
