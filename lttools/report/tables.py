"""Tables as Markdown lines and as HTML, for the leaderboard, the report and `lttools compare`."""
from __future__ import annotations

import html


def markdown_table(head: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(head) + " |", "|" + "---|" * len(head),
            *("| " + " | ".join(r) + " |" for r in rows)]


def html_table(head: list[str], rows: list[list[str]], row_attrs: list[str] | None = None,
               attrs: str = "") -> str:
    """`row_attrs`: per row, text inside its <tr> tag (e.g. " class='tied'"); `attrs` likewise
    for the <table> tag."""
    th = "".join(f"<th>{html.escape(c)}</th>" for c in head)
    body = "".join(f"<tr{extra}>" + "".join(f"<td>{html.escape(c)}</td>" for c in r) + "</tr>"
                   for r, extra in zip(rows, row_attrs or [""] * len(rows)))
    return f"<table{attrs}><thead><tr>{th}</tr></thead><tbody>{body}</tbody></table>"
