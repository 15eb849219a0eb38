"""The pooled leaderboard (lttools/compare/pool.py) as Markdown and as JSON."""
from __future__ import annotations

from typing import Any

from lttools.compare.pool import Pooled, PooledMethod
from lttools.report.leaderboard import bounds, share
from lttools.report.tables import markdown_table

HEADER = ["rank", "method", "pooled bal. acc", "interval", "per backbone", "vs best",
          "P(> best)", "vs ce", "P(> ce)", "first / top 3", "noise: images / backbones / seeds"]


def _verdict(m: PooledMethod, which: str) -> str:
    v = getattr(m, which)
    if v is None:
        return "—"
    return v.against_best() if which == "vs_best" else v.against_reference()


def rows(p: Pooled) -> list[list[str]]:
    out = []
    for i, m in enumerate(p.methods, start=1):
        out.append([
            str(i), m.key, f"{m.estimate:.2f}", bounds(m.interval),
            " / ".join(f"{x:.2f}" for x in m.backbone_means),
            "best" if m.key == p.best else _verdict(m, "vs_best"), share(m.p_beats_best),
            "reference" if m.key == p.reference else _verdict(m, "vs_reference"),
            share(m.p_beats_reference), f"{m.first:.0%} / {m.top3:.0%}",
            f"{m.noise.images:.0%} / {m.noise.backbones:.0%} / {m.noise.seeds:.0%}"])
    return out


def description(p: Pooled) -> str:
    b = p.replicates or len(p.backbones)
    return (f"{b} backbone replicates pooled (from {', '.join(p.backbones)}): test balanced accuracy "
            f"(%), the mean over backbones and stage-2 seeds, with its {p.settings.level:.0%} "
            "interval over backbones x seeds x test images (the same resampled images for every "
            "method and backbone; the spread across backbones with Student's t on "
            f"{b - 1} degrees of freedom). `vs best` / `vs ce`: the paired difference, paired "
            f"backbone by backbone, {p.settings.correction_name}-adjusted; P(> best): the share "
            "of paired runs (same backbone and seed) it wins; first / top 3: on how many "
            "backbones it ranks so; noise: the shares of the pooled mean's variance.")


def markdown(p: Pooled) -> str:
    lines = ["# Pooled over backbone replicates", "", description(p), ""]
    lines += [f"- {n}" for n in p.notes] + ([""] if p.notes else [])
    return "\n".join(lines + markdown_table(HEADER, rows(p))) + "\n"


def as_json(p: Pooled) -> dict[str, Any]:
    def verdict(v):
        return None if v is None else {"difference": v.difference, "p": v.p,
                                       "p_adjusted": v.p_adjusted, "significant": v.significant}
    return {"backbones": p.backbones, "reference": p.reference, "level": p.settings.level,
            "description": description(p), "notes": p.notes,
            "methods": [{"method": m.key, "estimate": m.estimate, "ci_low": m.interval[0],
                         "ci_high": m.interval[1], "per_backbone": m.backbone_means,
                         "vs_best": verdict(m.vs_best), "vs_reference": verdict(m.vs_reference),
                         "p_beats_best": m.p_beats_best,
                         "p_beats_reference": m.p_beats_reference, "first": m.first,
                         "top3": m.top3, "noise": vars(m.noise)} for m in p.methods]}
