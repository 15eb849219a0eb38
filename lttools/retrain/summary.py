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
PER_BACKBONE = ("test_bacc", "test_many", "test_medium", "test_few", "last_test_bacc")


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
    return summarize_replicates([history])


def _run_values(history: History, picks: list[dict[str, int]]) -> dict[str, list[float]]:
    """Per reported number, its value in each seed's run."""
    plan = history.plan
    test, val = history.scalars["test"], history.scalars.get("val", {})
    out: dict[str, list[float]] = {}
    for m in REPORTED:
        if m in test:
            out[f"test_{m}"] = [float(test[m][p["head"], p["epoch"]]) for p in picks]
    for m in ("acc", "bacc", "loma_mean", "ece"):
        if m in val:
            out[f"val_{m}"] = [float(val[m][p["head"], p["epoch"]]) for p in picks]
    for m in LAST_REPORTED:
        if m in test:
            out[f"last_test_{m}"] = [float(test[m][p["last_head"], -1]) for p in picks]
    out["selected_epoch"] = [p["epoch"] for p in picks]
    for k in plan.grid_keys:
        out[f"selected_{k}"] = [plan.grid[p["grid"]][k] for p in picks]
    return out


def summarize_replicates(histories: list[History], backbones: list[int] | None = None,
                         ) -> tuple[dict[str, float], dict[str, Any]]:
    """One method's results on one backbone replicate or several (each a History, the same
    plan), pooled: the metrics' mean and std run over every (backbone, seed) run; with several
    backbones the details also hold each backbone's numbers (`per_backbone`)."""
    plan = histories[0].plan
    picks = [select(h) for h in histories]
    values = [_run_values(h, p) for h, p in zip(histories, picks)]
    metrics: dict[str, float] = {}
    for name in values[0]:
        metrics[f"{name}_mean"], metrics[f"{name}_std"] = mean_std(
            [x for v in values for x in v[name]])
    metrics["selected_on_validation"] = int("val" in histories[0].scalars)  # 0: last epoch
    metrics["num_seeds"] = len(plan.seeds)
    metrics["num_heads"] = plan.num_heads
    metrics["epochs"] = plan.epochs
    metrics["metrics_schema"] = METRICS_SCHEMA
    several = len(histories) > 1
    if several:
        metrics["num_backbones"] = len(histories)

    curves = []  # per epoch, on validation: the test set is scored where it is reported only
    for e in range(plan.epochs + 1):
        row: dict[str, float] = {"epoch": e}
        for m in ("bacc", "loma_mean", "loma_std", "ece"):
            if m in histories[0].scalars.get("val", {}):
                row[f"val_{m}"] = float(np.mean([
                    float(h.scalars["val"][m][[p["head"] for p in ps], e].mean())
                    for h, ps in zip(histories, picks)]))
        curves.append(row)
    at = [(h.per_class["test"], p) for h, ps in zip(histories, picks) for p in ps]
    sel_acc = torch.stack([pc["acc"][p["head"], p["epoch"]] for pc, p in at]).mean(0)
    sel_loma = torch.stack([pc["loma"][p["head"], p["epoch"]] for pc, p in at]).mean(0)
    bins = at[0][0]["rel_count"].shape[-1]
    details = {
        "method": plan.method.name, "key": plan.key, "grid": plan.grid,
        "grid_keys": plan.grid_keys, "seeds": plan.seeds,
        "selections": picks[0] if not several else [
            {"backbone": b, **p} for b, ps in zip(backbones or range(len(picks)), picks)
            for p in ps],
        "epochs": curves,
        "per_class": [{"class": k, "train_count": _count(histories[0].class_counts, k),
                       "test_acc": _num(sel_acc[k]), "test_loma": _num(sel_loma[k])}
                      for k in range(len(sel_acc))],
        "reliability": [
            {"bin": b, "count": float(sum(pc["rel_count"][p["head"], p["epoch"], b] for pc, p in at)),
             "acc": _num(torch.stack([pc["rel_acc"][p["head"], p["epoch"], b] for pc, p in at])
                         .nanmean()),
             "conf": _num(torch.stack([pc["rel_conf"][p["head"], p["epoch"], b] for pc, p in at])
                          .nanmean())}
            for b in range(bins)],
    }
    if several:
        details["backbones"] = list(backbones or range(len(histories)))
        details["per_backbone"] = [
            {"backbone": b, **{f"{n}_{s}": x for n in PER_BACKBONE if n in v
                               for s, x in zip(("mean", "std"), mean_std(v[n]))}}
            for b, v in zip(details["backbones"], values)]
    return metrics, details


def reported_predictions(history: History, labels: np.ndarray, thresholds: tuple[int, int],
                         test_set: dict[str, Any]) -> Predictions:
    """Per seed [S, N]: the test predictions at the selected head and epoch, and at the last
    epoch of the head best on validation there (the numbers the metrics report)."""
    return replicate_predictions([history], labels, thresholds, test_set)


def replicate_predictions(histories: list[History], labels: np.ndarray,
                          thresholds: tuple[int, int], test_set: dict[str, Any],
                          backbones: list[int] | None = None) -> Predictions:
    """As reported_predictions, one row per (backbone, seed), backbone-major; several backbones
    are recorded as such (`Predictions.backbones`)."""
    selected, last = [], []
    for history in histories:
        pred = history.predictions
        for p in select(history):
            kept = int(pred["selected_epoch"][p["head"]])
            if kept != p["epoch"]:
                raise AssertionError(f"head {p['head']}: predictions kept at epoch {kept}, "
                                     f"selection chose epoch {p['epoch']}")
            selected.append(pred["selected"][p["head"]])
            last.append(pred["last"][p["last_head"]])
    seeds = histories[0].plan.seeds
    several = len(histories) > 1
    return Predictions.from_class_ids(
        np.asarray(labels), torch.stack(selected).numpy(), torch.stack(last).numpy(),
        np.tile(np.asarray(seeds), len(histories)), histories[0].class_counts, thresholds,
        test_set, np.repeat(np.asarray(backbones or range(len(histories))), len(seeds))
        if several else None)


def _count(counts: np.ndarray, k: int) -> int | None:
    return int(counts[k]) if len(counts) > k else None


def _num(x) -> float | None:
    x = float(x)
    return x if np.isfinite(x) else None
