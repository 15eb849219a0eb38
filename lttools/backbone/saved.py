"""`models/backbones/<seed>.pt`: the stage-1 backbone as a state dict plus what rebuilds it, and
where its head comes from (trained, imported as is, or missing: to be fitted on features)."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lttools.device import resolve_device
from lttools.errors import LTError
from lttools.models import create_backbone
from lttools.models.normalized import NormalizedBackbone

HEADS = ("trained", "checkpoint", "missing")


@dataclass
class SavedBackbone:
    model: NormalizedBackbone
    head: str  # one of HEADS
    notes: dict[str, Any]  # init checkpoint, normalisation: recorded in the feature store


def backbone_payload(model: torch.nn.Module, arch: str, num_classes: int, in_channels: int,
                     dataset: str, head: str = "trained",
                     notes: dict[str, Any] | None = None) -> dict[str, Any]:
    return {"arch": arch, "num_classes": num_classes, "in_channels": in_channels,
            "state_dict": {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()},
            "dataset": dataset, "head": head, "notes": dict(notes or {})}


def load_backbone(path: str | Path, device: str = "auto") -> SavedBackbone:
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
    return SavedBackbone(model.to(resolve_device(device)).eval(), payload.get("head", "trained"),
                         payload.get("notes", {}))
