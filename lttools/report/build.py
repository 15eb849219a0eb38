"""Build the leaderboard, plots and HTML report from what the retrain stages wrote."""
from __future__ import annotations

import json
from pathlib import Path

from lttools.atomic import write_text
from lttools.report import html as html_report
from lttools.report import leaderboard, plots
from lttools.report.load import load_results
from lttools.report.significance import for_results
from lttools.stats import Settings
from lttools.backbone.training_log import SUMMARY_FILE, read_curves

REPORT_HTML = Path("reports/report.html")


def build_report(keys: list[str], metrics_root: str | Path = "metrics",
                 out_dir: str | Path = "reports",
                 leaderboard_path: str | Path = "metrics/leaderboard.md",
                 settings: Settings = Settings(), seeds: list[int] | None = None) -> Path:
    """`seeds`: the backbone replicates whose stage-1 results (metrics/backbone/<seed>/) are
    shown (None: every one found)."""
    root, out_dir = Path(metrics_root), Path(out_dir)
    results = load_results(keys, root)
    sig = for_results(results, settings)
    stage1 = stage1_results(root / "backbone", seeds)
    summaries = {s: r[0] for s, r in stage1.items() if isinstance(r[0], dict)}
    write_text(leaderboard_path, leaderboard.markdown(results, summaries, sig))
    figures = plots.all_plots(results, out_dir, {s: r[1] for s, r in stage1.items() if r[1]},
                              sig)
    intro = ("Methods sorted by selected test balanced accuracy (mean ± std over seeds); "
             "grid point and epoch chosen on the balanced validation split only.")
    stage1_words = leaderboard.stage1_line(summaries)
    if stage1_words:
        intro += " " + stage1_words
    page = out_dir / "report.html"
    write_text(page, html_report.render(results, figures, "lttools report", intro, sig))
    return page


def stage1_results(directory: Path, seeds: list[int] | None = None,
                   ) -> dict[int, tuple[dict | None, list[dict]]]:
    """Per backbone replicate (the numbered folders under `directory`): its stage-1 summary
    (dvclive's metrics.json) and per-epoch curves."""
    found = sorted(int(d.name) for d in directory.glob("*") if d.is_dir() and d.name.isdigit())
    return {s: (_maybe_json(directory / str(s) / SUMMARY_FILE), read_curves(directory / str(s)))
            for s in found if seeds is None or s in seeds}


def _maybe_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
