"""Stage-1 curves through dvclive: files DVC reads, resume replay, and clear refusals."""
import json
import subprocess

import pytest

from lttools.errors import LTError
from lttools.report.plots import backbone_curve
from lttools.backbone.config import BackboneConfig
from lttools.backbone.train import train_backbone
from lttools.backbone.training_log import CURVES, read_curves, training_log
from test_train import tiny_splits

CFG = BackboneConfig(arch="resnet32", epochs=4, batch_size=16, lr=0.05, seed=2)


def test_log_writes_dvc_plot_files_and_summary(dvc_dir, monkeypatch):
    monkeypatch.chdir(dvc_dir)
    with training_log("log") as log:
        train_backbone(tiny_splits(), CFG, "cpu", quiet=True, on_epoch=log.epoch)
        log.summary({"test_acc": 12.5})
    rows = read_curves(dvc_dir / "log")
    assert [r["epoch"] for r in rows] == [1, 2, 3, 4]
    assert set(rows[0]) == {"epoch", *CURVES}
    summary = json.loads((dvc_dir / "log" / "metrics.json").read_text())
    assert summary["test_acc"] == 12.5 and summary["loss"] == rows[-1]["loss"]
    header = (dvc_dir / "log/plots/metrics/val_bacc.tsv").read_text().splitlines()[0]
    assert header.split("\t") == ["step", "val_bacc"]  # no timestamps: reruns give equal files
    assert backbone_curve({0: rows}, dvc_dir / "curve.png").stat().st_size > 0


def test_resumed_run_replays_restored_epochs(tmp_path):
    full, resumed = [], []
    train_backbone(tiny_splits(), CFG, "cpu", quiet=True, on_epoch=full.append)
    ck = tmp_path / "ck.pt"
    train_backbone(tiny_splits(), CFG, "cpu", ck, 1, quiet=True, stop_after=2)
    train_backbone(tiny_splits(), CFG, "cpu", ck, 1, quiet=True, on_epoch=resumed.append)
    assert [r["epoch"] for r in resumed] == [1, 2, 3, 4]
    for a, b in zip(full, resumed):
        assert {k: a[k] for k in CURVES} == {k: b[k] for k in CURVES}


def test_outside_a_dvc_repository_is_refused(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    subprocess.run(["git", "init", "-q"], check=True)
    with pytest.raises(LTError, match="inside the lttools checkout"):
        with training_log("log"):
            pass
    assert not (tmp_path / ".dvc").exists()  # dvclive would have run `dvc init` here


def test_git_repository_without_commits_says_to_commit(tmp_path, monkeypatch):
    from dvc.repo import Repo

    monkeypatch.chdir(tmp_path)
    subprocess.run(["git", "init", "-q"], check=True)
    Repo.init(tmp_path).close()
    with pytest.raises(LTError, match="first commit"):
        with training_log("log"):
            pass
