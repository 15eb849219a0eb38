"""Stage 1: train the backbone with plain cross-entropy on the long-tailed training set.

The recipe is the LOS paper's (SGD, momentum 0.9, weight decay 5e-3, cosine to 0, crop+flip).
The fast path takes its batches from batches.py (array datasets resident on the device with
batched tensor augmentation; image files through DataLoader workers), and on CUDA adds
channels_last, bf16 autocast and the fused optimizer. A checkpoint every
`checkpoint_every` epochs holds everything needed to resume bit-for-bit. Launched by
torchrun, each process trains on its shard of every global batch (distributed.py).
"""
from __future__ import annotations

import contextlib
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from lttools.backbone.batches import batch_source
from lttools.backbone.checkpoint import fingerprint, resumable_state, save_checkpoint
from lttools.backbone.config import BackboneConfig
from lttools.backbone.distributed import (DistContext, close_distributed, convert_batchnorm,
                                          init_distributed, process_device)
from lttools.backbone.evaluate import evaluate_images, train_sample
from lttools.backbone.start import prepare_model
from lttools.data.prepared import AnySplits
from lttools.device import resolve_device
from lttools.errors import LTError
from lttools.models import create_backbone
from lttools.provenance import sha256_file

EpochCallback = Callable[[dict[str, float]], None]


@dataclass
class TrainResult:
    model: torch.nn.Module
    history: list[dict[str, float]]
    is_main: bool = True  # False on the other ranks of a torchrun launch: write nothing
    head: str = "trained"  # "checkpoint": imported as is; "missing": to be fitted on features
    init_note: str = ""  # what was imported from backbone.init


def lr_factor(step: int, steps_per_epoch: int, cfg: BackboneConfig) -> float:
    """Linear warm-up over `warmup_epochs`, then cosine annealing stepped per epoch
    (torch's CosineAnnealingLR(T_max=epochs)) over the remaining epochs."""
    warm = int(round(cfg.warmup_epochs * steps_per_epoch))
    if step < warm:
        return (step + 1) / warm
    epoch = (step - warm) // steps_per_epoch
    span = max(cfg.epochs - cfg.warmup_epochs, 1e-9)
    return 0.5 * (1 + math.cos(math.pi * min(epoch / span, 1.0)))


def _check_device_options(cfg: BackboneConfig, dev: torch.device) -> None:
    if cfg.gpu_decode and dev.type != "cuda":
        raise LTError("backbone.gpu_decode = true needs CUDA (torchvision decodes the JPEGs on "
                      "the GPU); set it to false on this device")


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


def train_backbone(splits: AnySplits, cfg: BackboneConfig, device: str = "auto",
                   checkpoint: str | Path | None = None, checkpoint_every: int = 5,
                   quiet: bool = False, stop_after: int | None = None,
                   on_epoch: EpochCallback | None = None) -> TrainResult:
    """Train (or resume) stage 1. `on_epoch` gets every epoch's row on rank 0, those restored
    from a checkpoint first. `stop_after` ends early after that many epochs of this call,
    leaving the checkpoint as an interrupted run would."""
    cfg.validate()
    dev = resolve_device(device)
    ctx = init_distributed(dev, cfg.batch_size)
    dev = process_device(dev, ctx)
    benchmark = torch.backends.cudnn.benchmark
    torch.backends.cudnn.benchmark = cfg.cudnn_benchmark and dev.type == "cuda"
    try:
        return _train(splits, cfg, dev, ctx, checkpoint, checkpoint_every, quiet, stop_after,
                      on_epoch if ctx.is_main else None)
    finally:
        torch.backends.cudnn.benchmark = benchmark
        close_distributed(ctx)


def _train(splits: AnySplits, cfg: BackboneConfig, dev: torch.device, ctx: DistContext,
           checkpoint, checkpoint_every: int, quiet: bool, stop_after: int | None,
           on_epoch: EpochCallback | None) -> TrainResult:
    torch.manual_seed(cfg.seed)
    _check_device_options(cfg, dev)
    autocast = _amp_context(cfg, dev)
    model = create_backbone(cfg.arch, splits.num_classes, splits.in_channels)
    imported = prepare_model(model, cfg, lambda: train_sample(splits))
    if cfg.epochs == 0:  # the imported checkpoint as it is
        return TrainResult(model, [], ctx.is_main, "checkpoint" if imported.has_head else "missing",
                           imported.note)
    if ctx.active and cfg.sync_bn:
        model = convert_batchnorm(model, dev)
    model.to(dev)
    memory_format = torch.channels_last if cfg.channels_last else torch.contiguous_format
    model.to(memory_format=memory_format)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.scaled_lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay, fused=dev.type == "cuda" or None)
    source = batch_source(splits, cfg, dev, ctx)
    n = splits.size("train")
    steps_per_epoch = len(source.steps)
    sched = torch.optim.lr_scheduler.LambdaLR(
        opt, lambda step: lr_factor(step, steps_per_epoch, cfg))
    gen = torch.Generator().manual_seed(cfg.seed)
    history: list[dict[str, float]] = []
    start = 0
    recipe = {**cfg.recipe(), "init_sha256": sha256_file(cfg.init) if cfg.init else ""}
    current = fingerprint(recipe, splits.meta, splits.num_classes, n, ctx.world_size)
    ckpt_path = Path(checkpoint) if checkpoint else None
    state = resumable_state(ckpt_path, dev, current) if ckpt_path is not None else None
    if state is not None:
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
        loss_sum = torch.zeros((), dtype=torch.float64, device=dev)
        correct = torch.zeros((), dtype=torch.int64, device=dev)
        seen = 0
        for xb, yb in source.epoch(epoch, gen):
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
        if ctx.is_main and splits.size("val") and ((epoch + 1) % cfg.eval_every == 0
                                                   or epoch + 1 == cfg.epochs):
            row["val_bacc"] = evaluate_images(model, splits, "val", cfg.workers or None)["bacc"]
        if not math.isfinite(row["loss"]):
            raise LTError(f"stage 1 diverged at epoch {epoch + 1} (loss {row['loss']}); lower "
                          "backbone.lr")
        history.append(row)
        if on_epoch is not None:
            on_epoch(row)
        shown = next((r["val_bacc"] for r in reversed(history) if "val_bacc" in r), None)
        bar.set_postfix(loss=f"{row['loss']:.3f}", img_s=f"{row['images_per_s']:.0f}",
                        **({"val_bacc": f"{shown:.1f}"} if shown is not None else {}))
        done = epoch + 1
        if ctx.is_main and ckpt_path is not None and (done % checkpoint_every == 0
                                                      or done == cfg.epochs):
            save_checkpoint(ckpt_path, fingerprint=current, epoch=done,
                            complete=done == cfg.epochs, model=model, opt=opt, sched=sched,
                            generator=gen, history=history)
        ctx.barrier()
    model.to(memory_format=torch.contiguous_format)
    return TrainResult(model, history, ctx.is_main, init_note=imported.note if imported else "")

