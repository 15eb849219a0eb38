"""Model selection and summaries: pick (grid point, epoch) per seed on validation balanced
accuracy only, then report test numbers at that choice, and at the last epoch, as mean and
std over seeds."""
from __future__ import annotations

from typing import Any

import numpy as np
import torch

from lttools.metrics import mean_std
from lttools.predictions import Predictions
from lttools.results import METRICS_SCHEMA
from lttools.retrain.records import History

REPORTED = ("acc", "bacc", "many", "medium", "few", "loma_mean", "loma_std", "loma_min",
            "loma_max", "rsd_mean", "rsd_std", "ece", "wnorm_ratio")
LAST_REPORTED = ("acc", "bacc", "many", "medium", "few", "loma_mean", "ece")


def select(history: History) -> list[dict[str, int]]:
    """Per seed: the head (grid point) and epoch with the best validation balanced accuracy,
    and the head that is best on validation at the last epoch. Epoch 0 (the starting head)
    is a candidate only when there are no training epochs. Without a validation split
    nothing is selected: the last epoch of the one grid point (the trainer refuses grids)."""
    plan = history.plan
    s_count = len(plan.seeds)
    if "val" not in history.scalars:
        return [{"head": s, "grid": 0, "epoch": plan.epochs, "last_head": s, "last_grid": 0}
                for s in range(s_count)]
    vb = history.scalars["val"]["bacc"]  # [H, E+1]
    first = 1 if plan.epochs > 0 else 0
    out = []
    for s in range(s_count):
        heads = [g * s_count + s for g in range(len(plan.grid))]
        block = vb[heads, first:]  # [G, E']
        flat = int(torch.argmax(block.flatten()))  # first maximum: earliest epoch, first point
        g, e = divmod(flat, block.shape[1])
        g_last = int(torch.argmax(vb[heads, -1]))
        out.append({"head": heads[g], "grid": g, "epoch": e + first,
                    "last_head": heads[g_last], "last_grid": g_last})
    return out


def summarize(history: History) -> tuple[dict[str, float], dict[str, Any]]:
    """Flat numeric metrics for DVC, and details: per-seed choices, per-epoch curves,
    per-class results and reliability bins at the selected heads."""
    plan = history.plan
    picks = select(history)
    test, val = history.scalars["test"], history.scalars.get("val", {})
    metrics: dict[str, float] = {}

    def add(name: str, values: list[float]) -> None:
        metrics[f"{name}_mean"], metrics[f"{name}_std"] = mean_std(values)

    for m in REPORTED:
        if m in test:
            add(f"test_{m}", [float(test[m][p["head"], p["epoch"]]) for p in picks])
    for m in ("acc", "bacc", "loma_mean", "ece"):
        if m in val:
            add(f"val_{m}", [float(val[m][p["head"], p["epoch"]]) for p in picks])
    for m in LAST_REPORTED:
        if m in test:
            add(f"last_test_{m}", [float(test[m][p["last_head"], -1]) for p in picks])
    add("selected_epoch", [p["epoch"] for p in picks])
    for k in plan.grid_keys:
        add(f"selected_{k}", [plan.grid[p["grid"]][k] for p in picks])
    metrics["selected_on_validation"] = int(bool(val))  # 0: no validation split, last epoch
    metrics["num_seeds"] = len(plan.seeds)
    metrics["num_heads"] = plan.num_heads
    metrics["epochs"] = plan.epochs
    metrics["metrics_schema"] = METRICS_SCHEMA

    heads = [p["head"] for p in picks]
    curves = []  # per epoch, on validation: the test set is scored where it is reported only
    for e in range(plan.epochs + 1):
        row: dict[str, float] = {"epoch": e}
        for m in ("bacc", "loma_mean", "loma_std", "ece"):
            if m in val:
                row[f"val_{m}"] = float(val[m][heads, e].mean())
        curves.append(row)
    pc = history.per_class["test"]
    sel_acc = torch.stack([pc["acc"][p["head"], p["epoch"]] for p in picks]).mean(0)
    sel_loma = torch.stack([pc["loma"][p["head"], p["epoch"]] for p in picks]).mean(0)
    details = {
        "method": plan.method.name, "key": plan.key, "grid": plan.grid,
        "grid_keys": plan.grid_keys, "seeds": plan.seeds, "selections": picks,
        "epochs": curves,
        "per_class": [{"class": k, "train_count": _count(history.class_counts, k),
                       "test_acc": _num(sel_acc[k]), "test_loma": _num(sel_loma[k])}
                      for k in range(len(sel_acc))],
        "reliability": [
            {"bin": b, "count": float(sum(pc["rel_count"][p["head"], p["epoch"], b] for p in picks)),
             "acc": _num(torch.stack([pc["rel_acc"][p["head"], p["epoch"], b] for p in picks])
                         .nanmean()),
             "conf": _num(torch.stack([pc["rel_conf"][p["head"], p["epoch"], b] for p in picks])
                          .nanmean())}
            for b in range(pc["rel_count"].shape[-1])],
    }
    return metrics, details


def reported_predictions(history: History, labels: np.ndarray, thresholds: tuple[int, int],
                         test_set: dict[str, Any]) -> Predictions:
    """Per seed [S, N]: the test predictions at the selected head and epoch, and at the last
    epoch of the head best on validation there (the numbers the metrics report)."""
    picks = select(history)
    pred = history.predictions
    for p in picks:
        kept = int(pred["selected_epoch"][p["head"]])
        if kept != p["epoch"]:
            raise AssertionError(f"head {p['head']}: predictions kept at epoch {kept}, selection "
                                 f"chose epoch {p['epoch']}")
    return Predictions.from_class_ids(
        np.asarray(labels), torch.stack([pred["selected"][p["head"]] for p in picks]).numpy(),
        torch.stack([pred["last"][p["last_head"]] for p in picks]).numpy(),
        np.asarray(history.plan.seeds), history.class_counts, thresholds, test_set)


def _count(counts: np.ndarray, k: int) -> int | None:
    return int(counts[k]) if len(counts) > k else None


def _num(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None
