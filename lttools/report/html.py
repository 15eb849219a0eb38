"""One self-contained HTML file: the leaderboard table and the plots inlined as data URIs.
It makes no network request."""
from __future__ import annotations

import base64
import html
from pathlib import Path

from lttools.report.leaderboard import (NO_VALIDATION, backbone_lines, header, problems, rows,
                                       uncertainty_lines)
from lttools.report.load import MethodResult, ranked
from lttools.report.significance import Significance
from lttools.report.tables import html_table

STYLE = """body{font-family:sans-serif;margin:2em;max-width:1100px;color:#222}
table{border-collapse:collapse;font-size:13px}th,td{border:1px solid #ccc;padding:4px 8px}
th{background:#f2f2f2}td{text-align:right}td:nth-child(2),td:last-child{text-align:left}
img{max-width:100%;border:1px solid #eee;margin:.5em 0}.note{color:#555;font-size:13px}
tr.tied td{background:#eef6ee}"""


def render(results: list[MethodResult], plots: list[tuple[str, Path]], title: str,
           intro: str, sig: Significance | None = None) -> str:
    # rows statistically tied with the best are shaded (the best's own row too)
    tied = [" class='tied'" if sig is not None and sig.tied_with_best(r.key) else ""
            for r in ranked(results)]
    table = html_table(header(sig), rows(results, sig), tied, " id='leaderboard'")
    notes = [intro, *backbone_lines(results), *uncertainty_lines(results, sig)]
    if any(r.get("selected_on_validation") == 0 for r in results):
        notes.append(NO_VALIDATION)
    if sig is not None:
        notes.append("Shaded rows: statistically tied with the best method.")
    parts = [f"<!DOCTYPE html><html><head><meta charset='utf-8'><title>{html.escape(title)}"
             f"</title><style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>",
             *(f"<p class='note'>{html.escape(n.replace('**', ''))}</p>" for n in notes),
             table]
    bad = problems(results)
    if bad:
        parts.append("<h3>Not ranked</h3><ul>" + "".join(
            f"<li><b>{html.escape(k)}</b>: {html.escape(why)}</li>" for k, why in bad) + "</ul>")
    for caption, path in plots:
        data = base64.b64encode(Path(path).read_bytes()).decode()
        parts.append(f"<h2>{html.escape(caption)}</h2>"
                     f"<img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>")
    parts.append("</body></html>")
    return "\n".join(parts)
