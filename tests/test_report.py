"""Leaderboard, plots and the HTML report, including what they say about bad input."""
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from lttools.report.build import build_report
from lttools.report.leaderboard import markdown, subset_words
from lttools.report.load import load_results
from lttools.report.significance import for_results
from lttools.stats import Settings
from lttools.retrain.plan import make_plan
from lttools.predictions import identify_test_set
from lttools.retrain.summary import reported_predictions, summarize
from lttools.retrain.trainer import train_heads
from lttools.results import ResultPaths, write_results
from retrain_helpers import toy_data


def write_method(root: Path, key: str, entry: dict, seeds=(0, 1)):
    data = toy_data()
    plan = make_plan(key, entry, {"seeds": list(seeds), "epochs": 3, "lr": 0.05})
    history = train_heads(plan, data, quiet=True)
    metrics, details = summarize(history)
    labels = data.test_labels.numpy()
    predictions = reported_predictions(history, labels, (100, 20),
                                       identify_test_set({"dataset": "toy"}, labels))
    write_results(ResultPaths(root), key, metrics, details, predictions)
    return metrics


@pytest.fixture
def metrics_root(tmp_path):
    root = tmp_path / "metrics"
    write_method(root, "ce", {})
    write_method(root, "los", {"eps": [0.5, 0.9]})
    write_method(root, "crt", {})
    return root


def test_leaderboard_is_sorted_and_complete(metrics_root):
    results = load_results(["ce", "los", "crt"], metrics_root)
    md = markdown(results)
    table = [l for l in md.splitlines() if re.match(r"\| \d+ \|", l)]
    assert len(table) == 3
    accs = [float(l.split("|")[3].split("±")[0]) for l in table]
    assert accs == sorted(accs, reverse=True)
    los = next(l for l in table if "| los |" in l)
    assert "eps=" in los and "epoch" in los
    assert "nan" not in md.lower()


def test_empty_group_old_schema_and_unfinished_are_said_plainly(metrics_root):
    m = json.loads((metrics_root / "methods" / "crt.json").read_text())
    m["metrics_schema"] = 0
    (metrics_root / "methods" / "crt.json").write_text(json.dumps(m))
    m = json.loads((metrics_root / "methods" / "ce.json").read_text())
    m["num_seeds"] = 0
    (metrics_root / "methods" / "ce.json").write_text(json.dumps(m))
    m = json.loads((metrics_root / "methods" / "los.json").read_text())
    assert "test_many_mean" not in m  # toy counts 60..4: the Many group is empty
    m["test_ece_mean"] = float("nan")
    (metrics_root / "methods" / "los.json").write_text(json.dumps(m))
    results = load_results(["ce", "los", "crt", "ghost"], metrics_root)
    md = markdown(results)
    assert "**crt**: results written by another lttools version (schema 0" in md
    assert "**ce**: no finished seeds" in md
    assert "**ghost**: no results yet: run `dvc repro retrain@ghost`" in md
    los = next(l for l in md.splitlines() if "| los |" in l)
    assert los.split("|")[8].strip() == "—"  # Many: empty group
    assert los.split("|")[13].strip() == "—"  # ECE: NaN is never printed as a number
    assert "nan" not in md.lower()


def test_report_files_and_no_network(metrics_root, tmp_path):
    page = build_report(["ce", "los", "crt"], metrics_root, tmp_path / "reports",
                        tmp_path / "leaderboard.md")
    pngs = sorted(p.name for p in (tmp_path / "reports").glob("*.png"))
    assert len(pngs) >= 4 and all((tmp_path / "reports" / p).stat().st_size > 5000 for p in pngs)
    html = page.read_text()
    assert html.count("data:image/png;base64,") >= 4
    assert "id='leaderboard'" in html and html.count("<tr") == 4
    # nothing that a browser would fetch: no http(s) URLs, no external src/href
    assert not re.search(r"(src|href)\s*=\s*['\"]?(https?:)?//", html)
    assert "http://" not in html and "https://" not in html
    assert (tmp_path / "leaderboard.md").exists()


def test_report_renders_in_headless_chromium(metrics_root, tmp_path):
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        why = "headless Chromium is not installed (Debian package `chromium`; `make test` " \
              "installs it when run as root)"
        if os.environ.get("CI") == "true":
            pytest.fail(why)  # in CI a skipped test would test nothing
        pytest.skip(why)
    page = build_report(["ce", "los", "crt"], metrics_root, tmp_path / "reports",
                        tmp_path / "leaderboard.md")
    out = subprocess.run(
        [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=3000",
         "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=120)
    dom = out.stdout
    assert "<table id=\"leaderboard\">" in dom, out.stderr[-2000:]
    assert dom.count("<tr") == 4 and "class=\"tied\"" in dom
    # every image decoded: chromium reports naturalWidth only via script, so check a screenshot
    shot = tmp_path / "shot.png"
    subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu",
                    "--disable-background-networking", "--no-first-run",
                    f"--user-data-dir={tmp_path / 'profile2'}", "--window-size=1200,3000",
                    f"--screenshot={shot}", page.as_uri()], capture_output=True, timeout=120)
    assert shot.exists() and shot.stat().st_size > 20000


def _set_provenance(root: Path, key: str, checkpoint: str) -> None:
    path = root / "details" / f"{key}.json"
    details = json.loads(path.read_text())
    details["provenance"] = {
        "features_sha256": "f" * 64,
        "backbone": {"arch": "resnet32", "checkpoint_sha256": checkpoint, "feature_dim": 64},
        "data": {"dataset": "fashion_mnist", "imb_ratio": 100.0, "max_per_class": 500,
                 "val_per_class": 100, "selection": "first"},
        "versions": {"lttools": "0.1.0", "torch": "2.14.1"}}
    path.write_text(json.dumps(details))


def test_leaderboard_and_report_show_the_backbone_and_warn_when_it_differs(metrics_root, tmp_path):
    for key in ("ce", "los", "crt"):
        _set_provenance(metrics_root, key, "a" * 64)
    md = markdown(load_results(["ce", "los", "crt"], metrics_root))
    assert ("Backbone: resnet32 (64-d features) on fashion_mnist (imb_ratio 100, max_per_class "
            "500, val_per_class 100, selection first)") in md
    assert "checkpoint sha256 aaaaaaaaaaaaaaaa" in md and "Warning" not in md
    _set_provenance(metrics_root, "crt", "b" * 64)
    md = markdown(load_results(["ce", "los", "crt"], metrics_root))
    assert "not all trained on the same backbone and features (2 different ones)" in md
    page = build_report(["ce", "los", "crt"], metrics_root, tmp_path / "reports",
                        tmp_path / "leaderboard.md").read_text()
    assert "Backbone: resnet32" in page and "not all trained on the same backbone" in page


def test_the_subset_line_says_what_was_used():
    """A measured imbalance ratio is rounded; a given validation split is named as such, not
    as the val_per_class param it made irrelevant."""
    given = {"imb_ratio": 52.857142857142854, "max_per_class": 370, "val_per_class": 100,
             "selection": "first", "validation": "given"}
    assert subset_words(given) == ["imb_ratio 52.86", "max_per_class 370",
                                   "validation split given", "selection first"]
    assert "val_per_class 20" in subset_words({**given, "validation": "carved",
                                               "val_per_class": 20})


def test_leaderboard_gives_intervals_and_paired_verdicts(metrics_root, tmp_path):
    results = load_results(["ce", "los", "crt"], metrics_root)
    md = markdown(results, sig=for_results(results, Settings(resamples=500)))
    table = [l.split("|") for l in md.splitlines() if re.match(r"\| \d+ \|", l)]
    assert "| 95% interval | vs best | vs ce |" in md
    for row in table:
        mean = float(row[3].split("±")[0])
        low, high = (float(x) for x in row[4].strip(" []").split(","))
        assert low < mean < high
    assert table[0][5].strip() == "best"
    assert all(re.match(r" (tied: )?[-+]\d+\.\d\d, p [<=] ", row[5]) for row in table[1:])
    assert next(row for row in table if row[2].strip() == "ce")[6].strip() == "reference"
    assert "Intervals and tests: 95% intervals and paired tests" in md
    assert "Holm-adjusted over the 2 comparisons" in md
    # computed from the stored predictions, and seeded: the same bytes again
    again = markdown(load_results(["ce", "los", "crt"], metrics_root),
                     sig=for_results(results, Settings(resamples=500)))
    assert again == md


def test_a_method_without_predictions_is_ranked_and_says_why_it_has_no_interval(metrics_root):
    (metrics_root / "predictions" / "crt.npz").unlink()
    (metrics_root / "predictions" / "los.npz").write_bytes(b"damaged")
    results = load_results(["ce", "los", "crt"], metrics_root)
    md = markdown(results, sig=for_results(results, Settings(resamples=200)))
    assert "No interval for **crt**: no " in md and "re-run `dvc repro -f retrain@crt`" in md
    assert "No interval for **los**: " in md and "unreadable" in md
    assert len([l for l in md.splitlines() if re.match(r"\| \d+ \|", l)]) == 3
