"""Stage 1: train the backbone with plain cross-entropy on the long-tailed training set.

The recipe is the LOS paper's (SGD, momentum 0.9, weight decay 5e-3, cosine to 0, crop+flip).
The fast path holds the data as one uint8 tensor on the training device, augments whole
batches with tensor ops, draws batches from a seeded permutation (no DataLoader), and on CUDA
adds channels_last, bf16 autocast and the fused optimizer. A checkpoint every
`checkpoint_every` epochs holds everything needed to resume bit-for-bit. Launched by
torchrun, each process trains on its shard of every global batch (lttools.distributed).
"""
from __future__ import annotations

import contextlib
import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from lttools.atomic import save_torch
from lttools.config import from_section
from lttools.data.augment import CropFlip, apply_crop_flip, draw_crop_flip
from lttools.data.prepared import Splits
from lttools.device import resolve_device
from lttools.distributed import (DistContext, close_distributed, convert_batchnorm,
                                 init_distributed)
from lttools.errors import LTError, check_range
from lttools.metrics import accuracy_summary
from lttools.models import CifarResNet, create_backbone

CHECKPOINT_VERSION = 2
AMP_CHOICES = ("auto", "bf16", "off")
# Settings that change how fast training runs but not what it computes; a checkpoint may be
# resumed under different values of these.
RUNTIME_ONLY = ("compile", "cuda_graphs", "cudnn_benchmark")
STAGE_KEYS = ("device", "checkpoint_every")  # read by the stage, not part of the recipe
EpochCallback = Callable[[dict[str, float]], None]
TIMINGS = ("images_per_s",)  # history entries that differ between equal runs


@dataclass(frozen=True)
class BackboneConfig:
    arch: str = "resnet32"
    epochs: int = 200
    batch_size: int = 64  # the global batch (all processes together)
    lr: float = 0.01  # for base_batch_size; scaled linearly to batch_size
    base_batch_size: int = 64
    warmup_epochs: float = 0.0  # linear warm-up from lr/steps to lr, then cosine
    momentum: float = 0.9
    weight_decay: float = 5e-3
    crop_pad: int = 4
    flip: bool = True
    seed: int = 0
    amp: str = "auto"  # auto: bf16 autocast on CUDA, fp32 on CPU
    channels_last: bool = True
    compile: bool = False  # torch.compile the model (first epoch pays for compilation)
    cuda_graphs: bool = False  # CUDA only: compile with mode="reduce-overhead" (CUDA graphs)
    cudnn_benchmark: bool = True  # CUDA only: autotune convolutions for the fixed input size
    sync_bn: bool = True  # under torchrun: BatchNorm statistics over the global batch

    def validate(self) -> None:
        check_range("backbone.epochs", self.epochs, low=1)
        check_range("backbone.batch_size", self.batch_size, low=2)
        check_range("backbone.base_batch_size", self.base_batch_size, low=1)
        check_range("backbone.lr", self.lr, low=0, low_inclusive=False)
        check_range("backbone.warmup_epochs", self.warmup_epochs, 0, self.epochs)
        check_range("backbone.momentum", self.momentum, 0, 1, high_inclusive=False)
        check_range("backbone.weight_decay", self.weight_decay, low=0)
        check_range("backbone.crop_pad", self.crop_pad, low=0)
        if self.amp not in AMP_CHOICES:
            raise LTError(f"backbone.amp = {self.amp!r} is not valid; choose one of "
                          f"{', '.join(AMP_CHOICES)}")

    @property
    def scaled_lr(self) -> float:
        return self.lr * self.batch_size / self.base_batch_size

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "BackboneConfig":
        return from_section(cls, params, "backbone", also_valid=STAGE_KEYS)


@dataclass
class TrainResult:
    model: CifarResNet
    history: list[dict[str, float]]
    is_main: bool = True  # False on the other ranks of a torchrun launch: write nothing


def channel_stats(images: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    x = images.double()
    mean = x.mean(dim=(0, 2, 3))
    std = x.std(dim=(0, 2, 3)).clamp_min(1e-6)
    return mean.float(), std.float()


@torch.no_grad()
def predict_logits(model: CifarResNet, images: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
    model.eval()
    dev = next(model.parameters()).device
    out = [model(images[i:i + batch_size].to(dev)).float().cpu()
           for i in range(0, len(images), batch_size)]
    return torch.cat(out)


def evaluate_images(model: CifarResNet, splits: Splits, split: str) -> dict[str, float]:
    logits = predict_logits(model, torch.from_numpy(splits.images[split]))
    summary = accuracy_summary(logits, torch.from_numpy(splits.labels[split]), splits.class_counts)
    return {k: float(v) for k, v in summary.items()}


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


def lr_factor(step: int, steps_per_epoch: int, cfg: BackboneConfig) -> float:
    """Linear warm-up over `warmup_epochs`, then cosine annealing stepped per epoch
    (torch's CosineAnnealingLR(T_max=epochs)) over the remaining epochs."""
    warm = int(round(cfg.warmup_epochs * steps_per_epoch))
    if step < warm:
        return (step + 1) / warm
    epoch = (step - warm) // steps_per_epoch
    span = max(cfg.epochs - cfg.warmup_epochs, 1e-9)
    return 0.5 * (1 + math.cos(math.pi * min(epoch / span, 1.0)))


def _compiled(net: torch.nn.Module, cfg: BackboneConfig, dev: torch.device) -> torch.nn.Module:
    if cfg.cuda_graphs and dev.type != "cuda":
        raise LTError("backbone.cuda_graphs = true needs CUDA (it replays CUDA graphs of the "
                      "training step); set it to false on this device")
    if cfg.cuda_graphs:
        return torch.compile(net, mode="reduce-overhead")
    return torch.compile(net) if cfg.compile else net


def _amp_context(cfg: BackboneConfig, dev: torch.device):
    """The autocast context to train under; bf16 on another device than CUDA is refused."""
    amp = cfg.amp if cfg.amp != "auto" else ("bf16" if dev.type == "cuda" else "off")
    if amp == "bf16" and dev.type != "cuda":
        raise LTError("backbone.amp = 'bf16' needs CUDA (bf16 autocast on a CPU is slower than "
                      "fp32); use amp: auto or off")
    if amp == "bf16":
        return lambda: torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext


def _fingerprint(cfg: BackboneConfig, splits: Splits, world_size: int) -> dict[str, Any]:
    settings = {k: v for k, v in dataclasses.asdict(cfg).items() if k not in RUNTIME_ONLY}
    return {**settings, **{f"data.{k}": v for k, v in splits.meta.items()},
            "num_classes": splits.num_classes, "n_train": int(len(splits.labels["train"])),
            "world_size": world_size}


def _check_resumable(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if diff:
        lines = "; ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {current.get(k)!r}" for k in diff)
        raise LTError(f"cannot resume from {path}: it was made with other settings ({lines}). "
                      f"Restore those settings, or delete {path} to train from scratch.")


def _load_checkpoint(path: Path, dev: torch.device) -> dict[str, Any]:
    try:
        state = torch.load(path, map_location=dev, weights_only=True)
    except Exception as exc:  # noqa: BLE001 — a half-written or foreign file
        raise LTError(f"checkpoint {path} is unreadable (truncated, or not an lttools "
                      f"checkpoint: {type(exc).__name__}); delete it to train from scratch"
                      ) from exc
    if not isinstance(state, dict):
        raise LTError(f"checkpoint {path} is not an lttools checkpoint; delete it to train "
                      "from scratch")
    return state


def train_backbone(splits: Splits, cfg: BackboneConfig, device: str = "auto",
                   checkpoint: str | Path | None = None, checkpoint_every: int = 5,
                   quiet: bool = False, stop_after: int | None = None,
                   on_epoch: EpochCallback | None = None) -> TrainResult:
    """Train (or resume) stage 1. `on_epoch` gets every epoch's row on rank 0, those restored
    from a checkpoint first. `stop_after` ends early after that many epochs of this call,
    leaving the checkpoint as an interrupted run would."""
    cfg.validate()
    dev = resolve_device(device)
    ctx = init_distributed(dev, cfg.batch_size)
    if ctx.active and dev.type == "cuda":
        dev = torch.device("cuda", ctx.local_rank)
        torch.cuda.set_device(dev)
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = cfg.cudnn_benchmark and dev.type == "cuda"
    try:
        return _train(splits, cfg, dev, ctx, checkpoint, checkpoint_every, quiet, stop_after,
                      on_epoch if ctx.is_main else None)
    finally:
        torch.backends.cudnn.benchmark = benchmark
        close_distributed(ctx)


def _train(splits: Splits, cfg: BackboneConfig, dev: torch.device, ctx: DistContext,
           checkpoint, checkpoint_every: int, quiet: bool, stop_after: int | None,
           on_epoch: EpochCallback | None) -> TrainResult:
    torch.manual_seed(cfg.seed)
    autocast = _amp_context(cfg, dev)
    x_train = torch.from_numpy(splits.images["train"]).to(dev)
    y_train = torch.from_numpy(splits.labels["train"]).to(dev)
    model = create_backbone(cfg.arch, splits.num_classes, x_train.shape[1])
    model.set_normalization(*channel_stats(x_train.cpu()))
    if ctx.active and cfg.sync_bn:
        model = convert_batchnorm(model, dev)
    model.to(dev)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.scaled_lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay, fused=dev.type == "cuda" or None)
    n = len(y_train)
    steps_per_epoch = len(epoch_batches(n, cfg.batch_size, ctx.world_size))
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: lr_factor(step, steps_per_epoch, cfg))
    gen = torch.Generator().manual_seed(cfg.seed)
    history: list[dict[str, float]] = []
    start = 0
    fingerprint = _fingerprint(cfg, splits, ctx.world_size)
    ckpt_path = Path(checkpoint) if checkpoint else None
    if ckpt_path is not None and ckpt_path.exists():
        state = _load_checkpoint(ckpt_path, dev)
        # A finished run is never resumed: DVC re-runs this stage only when its code, data
        # or params changed, so the finished result is stale. An interrupted one is resumed.
        if not state.get("complete"):
            if state.get("version") != CHECKPOINT_VERSION:
                raise LTError(f"checkpoint {ckpt_path} of an interrupted run has version "
                              f"{state.get('version')}, this lttools resumes version "
                              f"{CHECKPOINT_VERSION}; delete it to train from scratch")
            _check_resumable(state["fingerprint"], fingerprint, ckpt_path)
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            gen.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            history = list(state["history"])
            start = int(state["epoch"])
    if on_epoch is not None:
        for row in history:
            on_epoch(row)

    net = model
    if ctx.active:
        net = torch.nn.parallel.DistributedDataParallel(
            model, device_ids=[dev.index] if dev.type == "cuda" else None)
    net = _compiled(net, cfg, dev)
    bar = tqdm(range(start, cfg.epochs), desc="stage 1", unit="epoch",
               disable=quiet or not ctx.is_main, initial=start, total=cfg.epochs)
    for epoch in bar:
        if stop_after is not None and epoch - start >= stop_after:
            break
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen).to(dev)
        batches = epoch_batches(n, cfg.batch_size, ctx.world_size)
        # The epoch's crops and flips, drawn on the CPU in the same order as batch by batch,
        # reach the device in one copy: nothing inside the loop waits on the host.
        draws = CropFlip.cat([draw_crop_flip(size, cfg.crop_pad, gen, cfg.flip)
                              for _, size in batches]).to(dev)
        loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
        correct = torch.zeros((), dtype=torch.int64, device=dev)
        seen = drawn = 0
        for first, size in batches:
            idx = perm[first:first + size]
            # augmentation of the whole global batch, identical on every rank
            xb = apply_crop_flip(x_train[idx], cfg.crop_pad, draws[drawn:drawn + size])
            drawn += size
            xb, yb = ctx.shard(xb), ctx.shard(y_train[idx])
            if cfg.cuda_graphs:  # a new training step: earlier graph outputs may be reused
                torch.compiler.cudagraph_mark_step_begin()
            with autocast():
                logits = net(xb.contiguous(memory_format=memory_format))
                loss = F.cross_entropy(logits.float(), yb)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            loss_sum += loss.detach().double() * len(yb)
            correct += (logits.argmax(1) == yb).sum()
            seen += len(yb)
        loss_sum, correct, seen = ctx.sum([float(loss_sum), float(correct), seen], dev)
        seconds = time.perf_counter() - t0
        row = {"epoch": epoch + 1, "loss": loss_sum / seen, "train_acc": 100 * correct / seen,
               "images_per_s": seen / seconds, "lr": opt.param_groups[0]["lr"]}
        if ctx.is_main and len(splits.labels["val"]):
            row["val_bacc"] = evaluate_images(model, splits, "val")["bacc"]
        if not math.isfinite(row["loss"]):
            raise LTError(f"stage 1 diverged at epoch {epoch + 1} (loss {row['loss']}); lower "
                          "backbone.lr")
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", val_bacc=f"{row.get('val_bacc', 0):.1f}",
                        img_s=f"{row['images_per_s']:.0f}")
        done = epoch + 1
        if ctx.is_main and ckpt_path is not None and (done % checkpoint_every == 0
                                                      or done == cfg.epochs):
            save_torch(ckpt_path, {
                "version": CHECKPOINT_VERSION, "fingerprint": fingerprint, "epoch": done,
                "complete": done == cfg.epochs,
                "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "generator": gen.get_state(),
                "torch_rng": torch.get_rng_state(),
                # without timings, so that equal runs write equal bytes (a stable DVC hash)
                "history": [{k: v for k, v in r.items() if k not in TIMINGS} for r in history]})
        ctx.barrier()
    model.to(memory_format=torch.contiguous_format)
    return TrainResult(model, history, ctx.is_main)


def backbone_payload(model: CifarResNet, cfg: BackboneConfig, splits: Splits) -> dict[str, Any]:
    """What `models/backbone.pt` holds: a state dict and what is needed to rebuild the model."""
    return {"arch": cfg.arch, "num_classes": splits.num_classes,
            "in_channels": int(splits.images["train"].shape[1]),
            "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
            "dataset": splits.dataset}


def load_backbone(path: str | Path, device: str = "auto") -> CifarResNet:
    path = Path(path)
    if not path.exists():
        raise LTError(f"backbone {path} does not exist; run `dvc repro train_backbone`")
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
        model = create_backbone(payload["arch"], payload["num_classes"], payload["in_channels"])
        model.load_state_dict(payload["state_dict"])
    except LTError:
        raise
    except Exception as exc:  # noqa: BLE001
        raise LTError(f"{path} is not a valid lttools backbone (truncated or foreign: "
                      f"{type(exc).__name__}); re-run `dvc repro train_backbone`") from exc
    return model.to(resolve_device(device)).eval()
