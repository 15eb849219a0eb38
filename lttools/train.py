"""Stage 1: train the backbone with plain cross-entropy on the long-tailed training set.

The recipe is the LOS paper's (SGD, momentum 0.9, weight decay 5e-3, cosine to 0, crop+flip).
Data is held as one uint8 tensor on the training device and augmented in batches. A checkpoint
every `checkpoint_every` epochs holds everything needed to resume bit-for-bit.
"""
from __future__ import annotations

import dataclasses
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from tqdm.auto import tqdm

from lttools.atomic import save_torch
from lttools.data.augment import random_crop_flip
from lttools.data.prepared import Splits
from lttools.device import resolve_device
from lttools.errors import LTError, check_range
from lttools.metrics import accuracy_summary
from lttools.models import CifarResNet, create_backbone

CHECKPOINT_VERSION = 1


@dataclass(frozen=True)
class BackboneConfig:
    arch: str = "resnet32"
    epochs: int = 200
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 5e-3
    crop_pad: int = 4
    flip: bool = True
    seed: int = 0

    def validate(self) -> None:
        check_range("backbone.epochs", self.epochs, low=1)
        check_range("backbone.batch_size", self.batch_size, low=2)
        check_range("backbone.lr", self.lr, low=0, low_inclusive=False)
        check_range("backbone.momentum", self.momentum, 0, 1, high_inclusive=False)
        check_range("backbone.weight_decay", self.weight_decay, low=0)
        check_range("backbone.crop_pad", self.crop_pad, low=0)

    @classmethod
    def from_params(cls, params: dict[str, Any]) -> "BackboneConfig":
        names = {f.name for f in dataclasses.fields(cls)}
        cfg = cls(**{k: v for k, v in params.items() if k in names})
        cfg.validate()
        return cfg


@dataclass
class TrainResult:
    model: CifarResNet
    history: list[dict[str, float]]


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


def _fingerprint(cfg: BackboneConfig, splits: Splits) -> dict[str, Any]:
    return {**dataclasses.asdict(cfg), **{f"data.{k}": v for k, v in splits.meta.items()},
            "num_classes": splits.num_classes, "n_train": int(len(splits.labels["train"]))}


def _check_resumable(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if diff:
        lines = "; ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {current.get(k)!r}" for k in diff)
        raise LTError(f"cannot resume from {path}: it was made with other settings ({lines}). "
                      f"Restore those settings, or delete {path} to train from scratch.")


def train_backbone(splits: Splits, cfg: BackboneConfig, device: str = "auto",
                   checkpoint: str | Path | None = None, checkpoint_every: int = 5,
                   quiet: bool = False, stop_after: int | None = None) -> TrainResult:
    """Train (or resume) stage 1. `stop_after` ends early after that many epochs of this call,
    leaving the checkpoint as an interrupted run would."""
    cfg.validate()
    dev = resolve_device(device)
    torch.manual_seed(cfg.seed)
    x_train = torch.from_numpy(splits.images["train"]).to(dev)
    y_train = torch.from_numpy(splits.labels["train"]).to(dev)
    model = create_backbone(cfg.arch, splits.num_classes, x_train.shape[1])
    model.set_normalization(*channel_stats(x_train.cpu()))
    model.to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=cfg.lr, momentum=cfg.momentum,
                          weight_decay=cfg.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.epochs)
    gen = torch.Generator().manual_seed(cfg.seed)
    history: list[dict[str, float]] = []
    start = 0
    fingerprint = _fingerprint(cfg, splits)
    ckpt_path = Path(checkpoint) if checkpoint else None
    if ckpt_path is not None and ckpt_path.exists():
        try:
            state = torch.load(ckpt_path, map_location=dev, weights_only=True)
        except Exception as exc:  # noqa: BLE001 — a half-written or foreign file
            raise LTError(f"checkpoint {ckpt_path} is unreadable (truncated, or not an lttools "
                          f"checkpoint: {type(exc).__name__}); delete it to train from scratch"
                          ) from exc
        if state.get("version") != CHECKPOINT_VERSION:
            raise LTError(f"checkpoint {ckpt_path} has version {state.get('version')}, expected "
                          f"{CHECKPOINT_VERSION}; delete it to train from scratch")
        finished_other_run = state["complete"] and state["fingerprint"] != fingerprint
        if not finished_other_run:  # a finished run with other settings is simply replaced
            _check_resumable(state["fingerprint"], fingerprint, ckpt_path)
            model.load_state_dict(state["model"])
            opt.load_state_dict(state["optimizer"])
            sched.load_state_dict(state["scheduler"])
            gen.set_state(state["generator"])
            torch.set_rng_state(state["torch_rng"])
            history = list(state["history"])
            start = int(state["epoch"])

    n = len(y_train)
    bar = tqdm(range(start, cfg.epochs), desc="stage 1", unit="epoch", disable=quiet,
               initial=start, total=cfg.epochs)
    for epoch in bar:
        if stop_after is not None and epoch - start >= stop_after:
            break
        model.train()
        t0 = time.perf_counter()
        perm = torch.randperm(n, generator=gen).to(dev)
        loss_sum = correct = seen = 0.0
        for i in range(0, n, cfg.batch_size):
            idx = perm[i:i + cfg.batch_size]
            if len(idx) < 2:  # BatchNorm cannot train on a single image
                continue
            xb = random_crop_flip(x_train[idx], cfg.crop_pad, gen, cfg.flip)
            logits = model(xb)
            loss = F.cross_entropy(logits, y_train[idx])
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            loss_sum += float(loss.detach()) * len(idx)
            correct += float((logits.argmax(1) == y_train[idx]).sum())
            seen += len(idx)
        sched.step()
        seconds = time.perf_counter() - t0
        val = evaluate_images(model, splits, "val") if len(splits.labels["val"]) else {}
        row = {"epoch": epoch + 1, "loss": loss_sum / seen, "train_acc": 100 * correct / seen,
               "images_per_s": seen / seconds}
        if val:
            row["val_bacc"] = val["bacc"]
        if not math.isfinite(row["loss"]):
            raise LTError(f"stage 1 diverged at epoch {epoch + 1} (loss {row['loss']}); lower "
                          "backbone.lr")
        history.append(row)
        bar.set_postfix(loss=f"{row['loss']:.3f}", val_bacc=f"{row.get('val_bacc', 0):.1f}",
                        img_s=f"{row['images_per_s']:.0f}")
        done = epoch + 1
        if ckpt_path is not None and (done % checkpoint_every == 0 or done == cfg.epochs):
            save_torch(ckpt_path, {
                "version": CHECKPOINT_VERSION, "fingerprint": fingerprint, "epoch": done,
                "complete": done == cfg.epochs,
                "model": model.state_dict(), "optimizer": opt.state_dict(),
                "scheduler": sched.state_dict(), "generator": gen.get_state(),
                "torch_rng": torch.get_rng_state(), "history": history})
    return TrainResult(model, history)


def backbone_payload(model: CifarResNet, cfg: BackboneConfig, splits: Splits) -> dict[str, Any]:
    """What `models/backbone.pt` holds: a state dict and what is needed to rebuild the model."""
    return {"arch": cfg.arch, "num_classes": splits.num_classes,
            "in_channels": int(splits.images["train"].shape[1]),
            "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
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
