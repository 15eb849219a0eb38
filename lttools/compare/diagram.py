"""The critical-difference diagram (Demšar 2006): methods on an axis of average rank, best on
the left, a bar under each group of methods that no pair test separates."""
from __future__ import annotations

from pathlib import Path

from lttools.compare.across import Ranking
from lttools.report.plots import _save, plt


def critical_difference(r: Ranking, path: Path) -> Path:
    m = len(r.methods)
    half = (m + 1) // 2
    bottom = 0.55 + 0.12 * len(r.groups) + 0.28 * max(half, m - half)
    fig, ax = plt.subplots(figsize=(8, 0.8 + 0.9 * bottom))
    ax.set_xlim(0.5, m + 0.5)
    ax.set_ylim(-bottom, 0.6)
    ax.axis("off")
    ax.hlines(0, 1, m, color="black", lw=1)
    for tick in range(1, m + 1):
        ax.vlines(tick, 0, 0.12, color="black", lw=1)
        ax.text(tick, 0.2, str(tick), ha="center", va="bottom", fontsize=9)
    for i, key in enumerate(r.methods):
        rank = r.average_rank[key]
        left = i < half
        row = i if left else m - 1 - i
        y = -0.35 - 0.12 * len(r.groups) - 0.28 * row
        end = 0.5 if left else m + 0.5
        ax.plot([rank, rank, end], [0, y, y], color="black", lw=0.8)
        ax.text(end + (-0.05 if left else 0.05), y, f"{key} ({rank:.2f})", va="center",
                ha="right" if left else "left", fontsize=9)
    for g, members in enumerate(r.groups):
        lo, hi = r.average_rank[members[0]], r.average_rank[members[-1]]
        y = -0.2 - 0.12 * g
        ax.hlines(y, lo - 0.03, hi + 0.03, color="tab:red", lw=3)
    ax.set_title(f"Average rank across {len(r.blocks)} test sets (Wilcoxon, adjusted; bars: "
                 "not separated)", fontsize=10)
    return _save(fig, path)
