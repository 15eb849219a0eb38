"""`data.val_per_class: 0` — the paper's exact subset — end to end with `dvc repro`, on the
Fashion-MNIST and the CIFAR layouts: the last epoch is reported, nothing is selected, and the
leaderboard says so; a grid is refused with the reason."""
import json
import subprocess
import sys

import pytest

from fixtures import make_cifar, make_fashion_mnist
from pipeline_helpers import check_metric_values, dvc, env, make_repo, set_param

pytestmark = pytest.mark.slow
METHODS = ["ce", "los", "tau_norm", "posthoc_la"]
ONE_VALUE = {"tau_norm": {"tau": 1.0}, "posthoc_la": {"tau": 1.0}}  # no grid: nothing to select


@pytest.mark.parametrize("layout", ["fashion_mnist", "cifar10"])
def test_repro_without_validation_reports_the_last_epoch(tmp_path, layout):
    repo = tmp_path / "repo"
    if layout == "fashion_mnist":
        make_fashion_mnist(repo / "data" / "raw", per_class=60, test_per_class=10)
        data = {"dataset": "fashion_mnist", "imb_ratio": 10, "max_per_class": 50}
    else:
        make_cifar(repo / "data" / "raw", "cifar10", per_class=40, test_per_class=5)
        data = {"dataset": "cifar10", "imb_ratio": 10, "max_per_class": 40}
    make_repo(repo, {"data": {**data, "root": "data/raw", "val_per_class": 0},
                     "backbone": {"epochs": 1}, "methods": ONE_VALUE}, methods=METHODS)
    dvc(repo, "repro")
    for key in METHODS:
        metrics = json.loads((repo / "metrics/methods" / f"{key}.json").read_text())
        check_metric_values(key, metrics)
        assert metrics["selected_on_validation"] == 0
        assert metrics["selected_epoch_mean"] == metrics["epochs"]  # the last epoch
        assert metrics["test_bacc_mean"] == metrics["last_test_bacc_mean"]
        assert not any(k.startswith("val_") for k in metrics)
    board = (repo / "metrics/leaderboard.md").read_text()
    assert "No validation split" in board and "nothing selected" in board
    assert "No validation split" in (repo / "reports/report.html").read_text()

    set_param(repo, "methods.tau_norm.tau", [0.5, 1.0])  # a grid needs validation data
    out = subprocess.run([sys.executable, "stages/retrain.py", "tau_norm", "--quiet"], cwd=repo,
                         env=env(), capture_output=True, text=True)
    assert out.returncode == 2, out.stderr
    assert "is a grid, but the feature store has no validation split" in out.stderr
