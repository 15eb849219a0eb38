"""Static PNG plots (matplotlib, no network): they render anywhere, unlike DVC's HTML."""
from __future__ import annotations

import math
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from lttools.atomic import atomic_path  # noqa: E402
from lttools.report.load import MethodResult, ranked  # noqa: E402
from lttools.report.significance import Significance  # noqa: E402

GROUPS = (("many", "Many"), ("medium", "Medium"), ("few", "Few"))


def _save(fig, path: Path) -> Path:
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110, bbox_inches="tight",
                    metadata={"Software": None})  # no version stamp: stable bytes
    plt.close(fig)
    return path


def _style(i: int) -> dict:
    """A distinct colour and dash for each of up to 20+ methods."""
    return {"color": plt.get_cmap("tab20")(i % 20), "ls": ("-", "--", ":", "-.")[(i // 10) % 4]}


def groups(results: list[MethodResult], path: Path) -> Path:
    """Which method wins where: Many / Medium / Few and overall, with std over seeds."""
    rs = ranked(results)
    fig, ax = plt.subplots(figsize=(8, 0.45 * len(rs) + 1.2))
    y = np.arange(len(rs))
    bars = [("test_bacc", "all classes")] + [(f"test_{g}", label) for g, label in GROUPS]
    h = 0.8 / len(bars)
    for j, (name, label) in enumerate(bars):
        means = [r.get(f"{name}_mean") for r in rs]
        if all(m is None for m in means):
            continue  # an empty group
        stds = [r.get(f"{name}_std") or 0 for r in rs]
        ax.barh(y + (j - 1.5) * h, [m if m is not None else 0 for m in means], h, xerr=stds,
                label=label, color=("0.3", "C0", "C2", "C3")[j], error_kw={"lw": 0.8})
    ax.set_yticks(y, [r.key for r in rs])
    ax.invert_yaxis()
    ax.set_xlabel("test accuracy (%), mean ± std over seeds")
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=8, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4, frameon=False)
    return _save(fig, path)


def per_class_heatmap(results: list[MethodResult], field: str, label: str, path: Path,
                      cmap: str) -> Path:
    """Methods (ranked) x classes (most to fewest training images)."""
    rs = [r for r in ranked(results) if r.per_class]
    if not rs:
        return _empty(path, "no per-class results")
    rows0 = sorted(rs[0].per_class, key=lambda row: -(row.get("train_count") or 0))
    order = [row["class"] for row in rows0]
    grid = np.full((len(rs), len(order)), np.nan)
    for i, r in enumerate(rs):
        by_class = {row["class"]: row.get(field) for row in r.per_class}
        grid[i] = [by_class.get(c) if by_class.get(c) is not None else np.nan for c in order]
    fig, ax = plt.subplots(figsize=(max(6, 0.55 * len(order) + 2.5), 0.38 * len(rs) + 1.6))
    im = ax.imshow(grid, aspect="auto", cmap=cmap)
    if len(order) <= 30:
        for (i, j), v in np.ndenumerate(grid):
            if np.isfinite(v):
                dark = im.norm(v) < 0.5
                ax.text(j, i, f"{v:.0f}" if abs(v) >= 10 else f"{v:.1f}", ha="center",
                        va="center", fontsize=6.5, color="white" if dark else "black")
        ax.set_xticks(range(len(order)),
                      [f"{row.get('name', c)}\n({row.get('train_count')})"
                       for c, row in zip(order, rows0)], fontsize=7)
    ax.set_yticks(range(len(rs)), [r.key for r in rs], fontsize=8)
    ax.set_xlabel("class (training images), most to fewest")
    fig.colorbar(im, ax=ax, label=label, fraction=0.03)
    return _save(fig, path)


def epochs(results: list[MethodResult], path: Path) -> Path:
    fig, (a, b) = plt.subplots(1, 2, figsize=(12, 4.2))
    for i, r in enumerate(ranked(results)):
        if len(r.epochs) < 2:
            continue
        e = [row["epoch"] for row in r.epochs]
        a.plot(e, [row.get("val_loma_mean", math.nan) for row in r.epochs], label=r.key,
               **_style(i))
        b.plot(e, [row.get("val_bacc", math.nan) for row in r.epochs], label=r.key, **_style(i))
    a.set(xlabel="re-training epoch (0 = starting head)",
          ylabel="validation LoMa, mean over classes")
    b.set(xlabel="re-training epoch (0 = starting head)",
          ylabel="validation balanced accuracy (%)")
    for ax in (a, b):
        ax.grid(alpha=0.3)
    b.legend(fontsize=7, ncol=2, loc="lower right")
    return _save(fig, path)


def reliability(results: list[MethodResult], path: Path) -> Path:
    rs = [r for r in ranked(results) if r.details.get("reliability")]
    if not rs:
        return _empty(path, "no reliability data")
    cols = min(4, len(rs))
    nrows = math.ceil(len(rs) / cols)
    fig, axes = plt.subplots(nrows, cols, figsize=(2.6 * cols, 2.6 * nrows), squeeze=False,
                             sharex=True, sharey=True)
    for ax, r in zip(axes.flat, rs):
        bins = r.details["reliability"]
        width = 1 / len(bins)
        centers = [(b["bin"] + 0.5) * width for b in bins]
        ax.bar(centers, [b["acc"] if b.get("acc") is not None else 0 for b in bins], width,
               color="C0", edgecolor="white", lw=0.3)
        ax.plot([0, 1], [0, 1], "k--", lw=0.7)
        ax.set_title(f"{r.key}  ECE {r.get('test_ece_mean') or 0:.1f}", fontsize=8)
    for ax in axes.flat[len(rs):]:
        ax.axis("off")
    for ax in axes[-1]:
        ax.set_xlabel("confidence", fontsize=8)
    for ax in axes[:, 0]:
        ax.set_ylabel("accuracy", fontsize=8)
    return _save(fig, path)


def backbone_curve(histories: dict[int, list[dict]], path: Path) -> Path:
    """Stage-1 training loss and validation accuracy per epoch, one colour per replicate."""
    fig, a = plt.subplots(figsize=(6, 3.6))
    b = a.twinx()
    several = len(histories) > 1
    for i, (seed, history) in enumerate(sorted(histories.items())):
        e = [row["epoch"] for row in history]
        tag = f" (backbone {seed})" if several else ""
        a.plot(e, [row.get("loss", float("nan")) for row in history], color=f"C{2 * i}",
               label=f"train loss{tag}")
        b.plot(e, [row.get("val_bacc", float("nan")) for row in history], color=f"C{2 * i + 1}",
               label=f"validation balanced accuracy (%){tag}")
    a.set(xlabel="stage-1 epoch", ylabel="train loss")
    a.grid(alpha=0.3)
    fig.legend(fontsize=7, loc="upper center")
    return _save(fig, path)


def replicate_spread(results: list[MethodResult], sig: Significance, path: Path) -> Path:
    """Per method (best first): each backbone replicate's mean over seeds as a dot, the pooled
    mean as a bar and its interval as a line: how far the backbones move each method."""
    keys = [r.key for r in ranked(results) if r.key in sig.across]
    fig, ax = plt.subplots(figsize=(6.5, 0.32 * len(keys) + 1.2))
    for y, key in enumerate(keys):
        low, high = sig.boot.interval(key)
        ax.plot([low, high], [y, y], color="0.6", lw=3, solid_capstyle="butt")
        ax.plot([sig.boot.estimate(key)] * 2, [y - 0.3, y + 0.3], color="k", lw=1.5)
        for i, x in enumerate(sig.across[key].per_backbone):
            ax.plot(x, y, "o", ms=4, color=f"C{i % 10}", label=f"backbone {sig.backbone_seeds[i]}" if y == 0 else None)
    ax.set_yticks(range(len(keys)), keys, fontsize=8)
    ax.invert_yaxis()
    ax.set_xlabel("test balanced accuracy (%): dots per backbone, bar the pooled mean, grey its "
                  "interval", fontsize=8)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(fontsize=7, loc="lower right")  # the worst methods sit left
    return _save(fig, path)


def _empty(path: Path, text: str) -> Path:
    fig, ax = plt.subplots(figsize=(4, 1))
    ax.axis("off")
    ax.text(0.5, 0.5, text, ha="center", va="center")
    return _save(fig, path)


def all_plots(results: list[MethodResult], out_dir: Path,
              backbone_history: dict[int, list[dict]] | None,
              sig: Significance | None = None) -> list[tuple[str, Path]]:
    """(title, path) of every plot written."""
    out = [
        ("Which method wins where: Many / Medium / Few", groups(results, out_dir / "groups.png")),
        ("Per-class test accuracy (%)", per_class_heatmap(
            results, "test_acc", "test accuracy (%)", out_dir / "per_class_accuracy.png",
            "viridis")),
        ("Logits magnitude (LoMa) per class", per_class_heatmap(
            results, "test_loma", "test LoMa", out_dir / "loma_per_class.png", "magma")),
        ("LoMa and validation accuracy across re-training epochs",
         epochs(results, out_dir / "epochs.png")),
        ("Reliability diagrams (test, selected heads)",
         reliability(results, out_dir / "reliability.png")),
    ]
    if sig is not None and sig.backbones > 1 and sig.across:
        out.insert(0, ("How far the backbone replicates move each method",
                       replicate_spread(results, sig, out_dir / "replicates.png")))
    if backbone_history:
        out.append(("Stage 1 training", backbone_curve(backbone_history, out_dir / "backbone.png")))
    return out
