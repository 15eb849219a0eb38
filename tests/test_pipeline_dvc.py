"""The whole DVC pipeline end to end on a miniature Fashion-MNIST, offline."""
import json
import os
import signal
import subprocess
import sys
import time

import pytest
import torch
import yaml

from fixtures import make_fashion_mnist
from lttools.backbone.training_log import read_curves
from pipeline_helpers import (check_metric_values, doc_recipe, dvc, env, git, make_repo,
                              run_lines, set_param)

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def repo(tmp_path_factory):
    repo = tmp_path_factory.mktemp("repo")
    make_fashion_mnist(repo / "data" / "raw", per_class=140, test_per_class=20)
    make_repo(repo, {"data": {"root": "data/raw", "imb_ratio": 30, "max_per_class": 120,
                              "val_per_class": 10}, "replicates": {"seeds": [0, 1]}})
    dvc(repo, "repro")
    return repo


def test_repro_writes_metrics_for_every_method(repo):
    shown = json.loads(dvc(repo, "metrics", "show", "--json"))
    metrics = next(iter(shown.values()))["data"]
    methods = yaml.safe_load((repo / "params.yaml").read_text())["methods"]
    for key in methods:
        m = metrics[f"metrics/methods/{key}.json"]["data"]
        for name in ("test_acc_mean", "test_acc_std", "test_bacc_mean", "test_many_mean",
                     "test_medium_mean", "test_few_mean", "last_test_acc_mean", "val_bacc_mean"):
            assert isinstance(m[name], (int, float)), (key, name)
        assert m["num_seeds"] == 2 and m["num_backbones"] == 2
        check_metric_values(key, m)
    for seed in (0, 1):
        backbone = metrics[f"metrics/backbone/{seed}/metrics.json"]["data"]
        assert {"test_acc", "val_bacc", "loss"} <= set(backbone)
        check_metric_values("backbone", {k: v for k, v in backbone.items() if k != "step"})
        assert (repo / f"data/features/{seed}/features.h5").exists()
    assert (repo / "models/backbones/0.pt").read_bytes() != (repo / "models/backbones/1.pt").read_bytes()


def test_status_is_clean_after_repro(repo):
    assert json.loads(dvc(repo, "status", "--json")) == {}


def test_editing_one_method_reruns_only_that_method(repo):
    params_path = repo / "params.yaml"
    original = params_path.read_text()
    params = yaml.safe_load(original)
    params["methods"]["los"]["eps"] = 0.95
    params_path.write_text(yaml.safe_dump(params, sort_keys=False))
    try:
        stale = json.loads(dvc(repo, "status", "--json"))
        assert set(stale) == {"retrain@los", "report"}, stale  # the report reads its output
        before = json.loads((repo / "metrics/methods/ce.json").read_text())
        out = dvc(repo, "repro")
        assert "retrain@ce" not in out.replace("Stage 'retrain@ce' didn't change", "")
        assert json.loads((repo / "metrics/methods/ce.json").read_text()) == before
        assert json.loads(dvc(repo, "status", "--json")) == {}
    finally:
        params_path.write_text(original)


def test_a_failed_rerun_keeps_the_last_good_results(repo):
    """A typo in a method's entry fails its stage with a clear error; DVC does not delete the
    stage's outputs first (persist: true), so the last good results are all still there, byte
    for byte, and dvc.lock still describes them."""
    outputs = [repo / f"metrics/{folder}/focal.{ext}" for folder, ext in
               (("methods", "json"), ("details", "json"), ("plots/epochs", "json"),
                ("plots/per_class", "json"), ("predictions", "npz"))]
    before = {p: p.read_bytes() for p in outputs}
    params_path = repo / "params.yaml"
    original = params_path.read_text()
    set_param(repo, "methods.focal.gamma", 2.0)
    set_param(repo, "methods.focal.method", "focall")
    try:
        out = subprocess.run([sys.executable, "-m", "dvc", "repro", "retrain@focal"], cwd=repo,
                             env=env(), capture_output=True, text=True)
        assert out.returncode != 0
        assert "unknown method 'focall'" in out.stdout + out.stderr, out.stderr
        assert {p: p.read_bytes() for p in outputs} == before
        assert "retrain@focal" in dvc(repo, "status")  # the change is still to be run
    finally:
        params_path.write_text(original)
    assert json.loads(dvc(repo, "status", "--json", "retrain@focal")) == {}


def test_report_stage_outputs(repo):
    board = (repo / "metrics/leaderboard.md").read_text()
    methods = yaml.safe_load((repo / "params.yaml").read_text())["methods"]
    for key in methods:
        assert f"| {key} |" in board
    assert len(list((repo / "reports").glob("*.png"))) >= 3
    assert (repo / "reports/report.html").exists()
    assert (repo / "reports/backbone.png").exists()  # from the dvclive stage-1 curves
    plots = dvc(repo, "plots", "show", "--json")
    assert "metrics/backbone/1/plots/metrics/val_bacc.tsv" in plots
    assert (repo / "reports/replicates.png").exists()  # each backbone's mean, per method


def test_dvc_workflow_metrics_diff_experiments_and_queue(repo):
    """The commands docs/compare.md gives, as written."""
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "baseline")
    set_param(repo, "methods.los.eps", 0.9)
    dvc(repo, "repro")
    git(repo, "commit", "-qam", "los eps 0.9")
    diff = dvc(repo, "metrics", "diff", "HEAD~1", "--md")
    assert "metrics/methods/los.json" in diff and "metrics/methods/ce.json" not in diff
    assert "methods.los.eps" in dvc(repo, "params", "diff", "HEAD~1")

    dvc(repo, "exp", "run", "-S", "methods.los.eps=0.95")
    shown = dvc(repo, "exp", "show", "--only-changed", "--md")  # --md: no terminal-width cut
    assert "0.95" in shown and "metrics/methods/los.json:" in shown  # the param and its metrics



def test_reading_results_as_the_docs_say_in_an_80_column_terminal(repo):
    """docs/compare.md's commands for reading results, as written, in an ordinary terminal's
    width: every table is whole (no column squeezed to `…`)."""
    original = (repo / "params.yaml").read_text()
    git(repo, "add", "-A")
    git(repo, "commit", "-qm", "results", "--allow-empty")
    try:
        outs = run_lines(repo, doc_recipe("compare.md", "reading results"),
                         extra_env={"COLUMNS": "80", "LINES": "40"})
        for out in outs:
            assert "…" not in out.stdout, out.args
        assert "| los |" in outs[0].stdout  # the leaderboard
        assert "test_bacc_mean" in outs[2].stdout  # dvc metrics show --md
    finally:
        (repo / "params.yaml").write_text(original)
        dvc(repo, "repro")


def test_dvc_repro_killed_with_sigkill_resumes_to_the_uninterrupted_weights(repo):
    """`dvc repro` (and its stage) killed with -9 mid stage 1; the next `dvc repro` resumes
    from the persisted checkpoint and ends with the weights of an uninterrupted run. Runs last:
    it leaves stage 1 re-trained with other params."""
    set_param(repo, "backbone.epochs", 6)
    set_param(repo, "backbone.checkpoint_every", 1)
    ck, weights = repo / "models/backbones/0.ckpt", repo / "models/backbones/0.pt"

    def saved_epoch():  # epoch of a checkpoint of this 6-epoch run, else 0
        try:
            state = torch.load(ck, weights_only=True)
        except (OSError, RuntimeError, EOFError):
            return 0
        return state["epoch"] if state["fingerprint"]["epochs"] == 6 else 0

    proc = subprocess.Popen([sys.executable, "-m", "dvc", "repro", "train_backbone@0"], cwd=repo,
                            env=env(), start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    while saved_epoch() < 1 and proc.poll() is None:
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    interrupted_at = saved_epoch()
    assert 1 <= interrupted_at < 6, "the run finished before it could be killed"
    dvc(repo, "repro", "train_backbone@0")
    resumed = weights.read_bytes()
    assert not ck.exists()  # a finished run's checkpoint is removed once the model is saved
    assert [r["epoch"] for r in read_curves(repo / "metrics/backbone/0")] == list(range(1, 7))

    dvc(repo, "repro", "--force", "--single-item", "train_backbone@0")
    assert weights.read_bytes() == resumed  # save_torch writes identical weights identically
