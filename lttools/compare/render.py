"""A comparison as Markdown, as one self-contained HTML page (no network, like the report),
and as JSON."""
from __future__ import annotations

import base64
import html
from pathlib import Path
from typing import Any

from lttools.compare.across import Ranking, describe
from lttools.compare.table import Cell, Comparison
from lttools.report.html import STYLE
from lttools.report.leaderboard import bounds
from lttools.report.significance import p_text
from lttools.report.tables import html_table, markdown_table


def accuracy(cell: Cell | None) -> str:
    if cell is None or cell.estimate is None:
        return "—"
    return f"{cell.estimate:.2f}" + (f" {bounds(cell.interval)}" if cell.interval else "")


def change(cell: Cell | None) -> str:
    if cell is None:
        return ""
    if cell.change is None or cell.verdict == "no change":
        return cell.verdict
    return f"{cell.change:+.2f}, {p_text(cell.p_adjusted)}: {cell.verdict}"


def cell_text(cmp: Comparison, key: str, column: int) -> str:
    cell = cmp.cells.get((key, column))
    if cell is None:
        return "— (no such method)"
    extra = change(cell) if column > 0 or cell.verdict == "no predictions" else ""
    return accuracy(cell) + (f"; {extra}" if extra else "")


def method_rows(cmp: Comparison) -> list[list[str]]:
    rows = [[k, *(cell_text(cmp, k, c) for c in range(len(cmp.revisions)))] for k in cmp.methods]
    rows.append(["stage-1 head (no re-training)",
                 *(f"{v:.2f}" if (v := cmp.stage1(c)) is not None else "—"
                   for c in range(len(cmp.revisions)))])
    return rows


def diagnostic_rows(cmp: Comparison) -> list[list[str]]:
    def text(key: str, column: int) -> str:
        cell = cmp.cells.get((key, column))
        if cell is None or cell.loma is None:
            return "—"
        return f"{cell.loma:.2f} / {cell.rsd:.2f}" if cell.rsd is not None else f"{cell.loma:.2f}"
    return [[k, *(text(k, c) for c in range(len(cmp.revisions)))] for k in cmp.methods]


def header(cmp: Comparison) -> list[str]:
    return ["method", *(f"{label} ({r.short})" for label, r in zip(cmp.labels, cmp.revisions))]


def description(cmp: Comparison) -> str:
    name = cmp.settings.correction_name
    return (f"Test balanced accuracy (%), mean over seeds [{cmp.settings.level:.0%} interval]; "
            f"changes against {cmp.revisions[0].short} with the paired test's verdict "
            f"({name}-adjusted over the methods of each column). {cmp.settings.describe()}."
            + "".join(noise_words(cmp, c) for c in sorted(cmp.noise)))


def noise_words(cmp: Comparison, column: int) -> str:
    b, s = cmp.noise[column]
    return (f" {cmp.labels[column]} ({cmp.revisions[column].short}) pools {b} backbone "
            "replicates (its intervals and paired tests hold them, paired backbone by "
            "backbone); its noise, median over the methods: test images "
            f"{s['images']:.0%}, backbones {s['backbones']:.0%}, stage-2 seeds {s['seeds']:.0%}.")


RANK_HEADER = ["average rank", "method", "separated from (adjusted p)"]


def rank_rows(r: Ranking) -> list[list[str]]:
    def separated(key: str) -> str:
        others = [(o, r.pairs.get((key, o)) or r.pairs[(o, key)]) for o in r.methods if o != key]
        shown = [f"{o} ({p_text(pa)})" for o, (_, pa) in others if pa < r.alpha]
        return ", ".join(shown) or "none"
    return [[f"{r.average_rank[k]:.2f}", k, separated(k)] for k in r.methods]


def ranking_lines(cmp: Comparison) -> list[str]:
    r = cmp.ranking
    if r is None:
        return []
    lines = ["", "## Across the revisions", "", describe(r, cmp.settings.correction_name), ""]
    lines += [f"- {n}" for n in r.notes] + ([""] if r.notes else [])
    lines += markdown_table(RANK_HEADER, rank_rows(r))
    groups = "; ".join(", ".join(g) for g in r.groups) or "none"
    return lines + ["", f"Not separated (one bar each): {groups}. Diagram: "
                    "critical_difference.png."]


def markdown(cmp: Comparison) -> str:
    lines = ["# Comparison", "", description(cmp), ""]
    lines += [f"- {n}" for n in cmp.notes] + ([""] if cmp.notes else [])
    lines += markdown_table(header(cmp), method_rows(cmp))
    lines += ["", "LoMa mean / RSD mean at the selected epoch (test set):", ""]
    lines += markdown_table(header(cmp), diagnostic_rows(cmp))
    lines += ranking_lines(cmp)
    return "\n".join(lines) + "\n"


def ranking_html(cmp: Comparison, diagram: Path | None) -> str:
    r = cmp.ranking
    if r is None:
        return ""
    notes = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in
                    [describe(r, cmp.settings.correction_name), *r.notes])
    image = ""
    if diagram is not None:
        data = base64.b64encode(Path(diagram).read_bytes()).decode()
        image = f"<img alt='critical-difference diagram' src='data:image/png;base64,{data}'>"
    return (f"<h2>Across the revisions</h2>{notes}{image}"
            f"{html_table(RANK_HEADER, rank_rows(r))}")


def page(cmp: Comparison, diagram: Path | None = None) -> str:
    notes = "".join(f"<p class='note'>{html.escape(n)}</p>" for n in [description(cmp),
                                                                      *cmp.notes])
    return ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>lttools comparison</title>"
            f"<style>{STYLE}</style></head><body><h1>Comparison</h1>{notes}"
            f"{html_table(header(cmp), method_rows(cmp))}"
            "<h2>LoMa mean / RSD mean</h2>"
            f"{html_table(header(cmp), diagnostic_rows(cmp))}"
            f"{ranking_html(cmp, diagram)}</body></html>\n")


def ranking_json(r: Ranking | None) -> dict[str, Any] | None:
    if r is None:
        return None
    return {"methods": r.methods, "average_rank": r.average_rank, "test_sets": r.blocks,
            "friedman_p": r.friedman_p, "alpha": r.alpha, "groups": r.groups, "notes": r.notes,
            "pairs": [{"better": a, "worse": b, "p": p, "p_adjusted": pa}
                      for (a, b), (p, pa) in r.pairs.items()]}


def as_json(cmp: Comparison) -> dict[str, Any]:
    def cell(c: Cell) -> dict[str, Any]:
        return {"test_bacc": c.estimate, "test_bacc_std": c.std,
                "ci_low": c.interval[0] if c.interval else None,
                "ci_high": c.interval[1] if c.interval else None,
                "change": c.change, "p_adjusted": c.p_adjusted, "verdict": c.verdict,
                "loma_mean": c.loma, "rsd_mean": c.rsd}
    return {
        "description": description(cmp), "notes": cmp.notes,
        "noise": [{"revision": cmp.revisions[c].name, "backbones": b, "shares": s}
                  for c, (b, s) in sorted(cmp.noise.items())],
        "level": cmp.settings.level, "resamples": cmp.settings.resamples,
        "correction": cmp.settings.correction,
        "revisions": [{"name": r.name, "commit": r.sha, "label": label, "subject": r.subject,
                       "stage1_test_bacc": cmp.stage1(c)}
                      for c, (r, label) in enumerate(zip(cmp.revisions, cmp.labels))],
        "methods": {k: [cell(cmp.cells[(k, c)]) if (k, c) in cmp.cells else None
                        for c in range(len(cmp.revisions))] for k in cmp.methods},
        "ranking": ranking_json(cmp.ranking),
    }
