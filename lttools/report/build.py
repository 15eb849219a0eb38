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
                 settings: Settings = Settings()) -> Path:
    root, out_dir = Path(metrics_root), Path(out_dir)
    results = load_results(keys, root)
    sig = for_results(results, settings)
    backbone = _maybe_json(root / "backbone" / SUMMARY_FILE)
    history = read_curves(root / "backbone")
    write_text(leaderboard_path, leaderboard.markdown(results, backbone, sig))
    figures = plots.all_plots(results, out_dir, history)
    intro = ("Methods sorted by selected test balanced accuracy (mean ± std over seeds); "
             "grid point and epoch chosen on the balanced validation split only.")
    if isinstance(backbone, dict) and isinstance(backbone.get("test_bacc"), (int, float)):
        intro += f" Stage-1 head without re-training: {backbone['test_bacc']:.2f}%."
    page = out_dir / "report.html"
    write_text(page, html_report.render(results, figures, "lttools report", intro, sig))
    return page


def _maybe_json(path: Path):
    try:
        return json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
