"""The resumable stage-1 checkpoint: model, optimizer, schedule, random states and history,
written every `checkpoint_every` epochs, and the check that a run may resume from it."""
from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

from lttools.atomic import save_torch
from lttools.errors import LTError

CHECKPOINT_VERSION = 2
TIMINGS = ("images_per_s",)  # history entries that differ between equal runs


def fingerprint(recipe: dict[str, Any], data_meta: dict[str, Any], num_classes: int,
                n_train: int, world_size: int) -> dict[str, Any]:
    """What a resumed run must share with the interrupted one."""
    return {**recipe, **{f"data.{k}": v for k, v in data_meta.items()},
            "num_classes": num_classes, "n_train": n_train, "world_size": world_size}


def check_resumable(saved: dict[str, Any], current: dict[str, Any], path: Path) -> None:
    diff = sorted(k for k in set(saved) | set(current) if saved.get(k) != current.get(k))
    if diff:
        lines = "; ".join(f"{k}: checkpoint {saved.get(k)!r} vs now {current.get(k)!r}" for k in diff)
        raise LTError(f"cannot resume from {path}: it was made with other settings ({lines}). "
                      f"Restore those settings, or delete {path} to train from scratch.")


def load_checkpoint(path: Path, dev: torch.device) -> dict[str, Any]:
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


def resumable_state(path: Path, dev: torch.device, current: dict[str, Any]) -> dict[str, Any] | None:
    """The state of an interrupted run to resume, or None (no checkpoint, or a finished run:
    DVC re-runs this stage only when its code, data or params changed, so a finished result is
    stale and is replaced)."""
    if not path.exists():
        return None
    state = load_checkpoint(path, dev)
    if state.get("complete"):
        return None
    if state.get("version") != CHECKPOINT_VERSION:
        raise LTError(f"checkpoint {path} of an interrupted run has version "
                      f"{state.get('version')}, this lttools resumes version "
                      f"{CHECKPOINT_VERSION}; delete it to train from scratch")
    check_resumable(state["fingerprint"], current, path)
    return state


def save_checkpoint(path: Path, *, fingerprint: dict[str, Any], epoch: int, complete: bool,
                    model: torch.nn.Module, opt: torch.optim.Optimizer, sched: Any,
                    generator: torch.Generator, history: list[dict[str, float]]) -> None:
    save_torch(path, {
        "version": CHECKPOINT_VERSION, "fingerprint": fingerprint, "epoch": epoch,
        "complete": complete, "model": model.state_dict(), "optimizer": opt.state_dict(),
        "scheduler": sched.state_dict(), "generator": generator.get_state(),
        "torch_rng": torch.get_rng_state(),
        # without timings, so that equal runs write equal bytes (a stable DVC hash)
        "history": [{k: v for k, v in r.items() if k not in TIMINGS} for r in history]})
