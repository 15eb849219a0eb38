"""Stage 1: training, determinism, checkpoints and resume (including after kill -9)."""
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from fixtures import class_images
from lttools.data.prepared import Splits, write_splits
from lttools.errors import LTError
from lttools.backbone.config import BackboneConfig
from lttools.backbone.train import train_backbone
from lttools.backbone.training_log import read_curves

ROOT = Path(__file__).resolve().parents[1]


def tiny_splits(per_class=(40, 20, 10, 5), size=12) -> Splits:
    y = np.repeat(np.arange(len(per_class)), per_class)
    yv = np.repeat(np.arange(len(per_class)), 5)
    return Splits("toy", len(per_class),
                  images={"train": class_images(y, (1, size, size)),
                          "val": class_images(yv, (1, size, size), 1),
                          "test": class_images(yv, (1, size, size), 2)},
                  labels={"train": y, "val": yv, "test": yv},
                  meta={"dataset": "toy", "imb_ratio": 8.0})


CFG = BackboneConfig(arch="resnet32", epochs=4, batch_size=16, lr=0.05, seed=0)


def test_training_learns_and_is_deterministic():
    a = train_backbone(tiny_splits(), CFG, "cpu", quiet=True)
    b = train_backbone(tiny_splits(), CFG, "cpu", quiet=True)
    assert a.history[-1]["loss"] < a.history[0]["loss"]
    assert set(a.history[0]) >= {"epoch", "loss", "train_acc", "val_bacc", "images_per_s"}
    for k, v in a.model.state_dict().items():
        assert torch.equal(v, b.model.state_dict()[k]), k


def test_resume_equals_uninterrupted(tmp_path):
    full = train_backbone(tiny_splits(), CFG, "cpu", quiet=True)
    ck = tmp_path / "ck.pt"
    # an interrupted run: same settings, stopped after 2 of 4 epochs (its checkpoint says so)
    partial = train_backbone(tiny_splits(), CFG, "cpu", checkpoint=ck, checkpoint_every=2,
                             quiet=True, stop_after=2)
    assert len(partial.history) == 2
    state = torch.load(ck, weights_only=True)
    assert state["epoch"] == 2 and not state["complete"]
    resumed = train_backbone(tiny_splits(), CFG, "cpu", checkpoint=ck, checkpoint_every=2,
                             quiet=True)
    assert len(resumed.history) == 4
    for k, v in full.model.state_dict().items():
        assert torch.equal(v, resumed.model.state_dict()[k]), k


def test_resume_with_changed_hyper_parameters_says_what_differs(tmp_path):
    ck = tmp_path / "ck.pt"
    train_backbone(tiny_splits(), CFG, "cpu", checkpoint=ck, checkpoint_every=1, quiet=True,
                   stop_after=1)
    changed = BackboneConfig(**{**CFG.__dict__, "lr": 0.1})
    with pytest.raises(LTError, match=r"lr: checkpoint 0.05 vs now 0.1.*delete"):
        train_backbone(tiny_splits(), changed, "cpu", checkpoint=ck, quiet=True)


def test_finished_checkpoint_is_replaced_not_resumed(tmp_path):
    ck = tmp_path / "ck.pt"
    short = BackboneConfig(**{**CFG.__dict__, "epochs": 1})
    train_backbone(tiny_splits(), short, "cpu", checkpoint=ck, quiet=True)
    result = train_backbone(tiny_splits(), CFG, "cpu", checkpoint=ck, quiet=True)
    assert len(result.history) == 4
    again = train_backbone(tiny_splits(), CFG, "cpu", checkpoint=ck, quiet=True)
    assert len(again.history) == 4  # same settings, finished: trained again, same weights
    for k, v in result.model.state_dict().items():
        assert torch.equal(v, again.model.state_dict()[k]), k


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    ck = tmp_path / "ck.pt"
    ck.write_bytes(b"not a checkpoint")
    with pytest.raises(LTError, match="unreadable.*delete it"):
        train_backbone(tiny_splits(), CFG, "cpu", checkpoint=ck, quiet=True)


def test_bad_backbone_params():
    with pytest.raises(LTError, match="backbone.lr"):
        BackboneConfig.from_params({"lr": -1})
    with pytest.raises(LTError, match="resnet32, resnet34"):
        train_backbone(tiny_splits(), BackboneConfig(arch="vgg", epochs=1), "cpu", quiet=True)


def _stage_env():
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env["PATH"]
    return env


def test_kill_dash_nine_then_rerun_resumes_to_identical_weights(dvc_dir):
    tmp_path = dvc_dir
    write_splits(tmp_path / "data.h5", tiny_splits(per_class=(120, 60, 30, 15), size=16))
    params = {"backbone": {"arch": "resnet32", "epochs": 6, "batch_size": 16, "lr": 0.05,
                           "device": "cpu", "checkpoint_every": 1}}
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))

    def cmd(tag):
        return [sys.executable, str(ROOT / "stages/train_backbone.py"), "--quiet", "--seed", "1",
                "--params", "params.yaml", "--data", "data.h5", "--out", f"{tag}.pt",
                "--checkpoint", f"{tag}.ckpt", "--curves", f"{tag}_log"]

    subprocess.run(cmd("full"), cwd=tmp_path, env=_stage_env(), check=True)
    proc = subprocess.Popen(cmd("killed"), cwd=tmp_path, env=_stage_env())
    ck = tmp_path / "killed.ckpt"
    while not ck.exists() and proc.poll() is None:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    done = torch.load(ck, weights_only=True)["epoch"]
    assert done < 6, "the run finished before it could be killed"
    assert not (tmp_path / "killed.pt").exists()
    subprocess.run(cmd("killed"), cwd=tmp_path, env=_stage_env(), check=True)
    a = torch.load(tmp_path / "full.pt", weights_only=True)["state_dict"]
    b = torch.load(tmp_path / "killed.pt", weights_only=True)["state_dict"]
    for k in a:
        assert torch.equal(a[k], b[k]), k
    # the resumed run's dvclive log covers all 6 epochs, equal to the uninterrupted one's
    full, resumed = read_curves(tmp_path / "full_log"), read_curves(tmp_path / "killed_log")
    assert [r["epoch"] for r in resumed] == list(range(1, 7))
    assert resumed == full


def test_checkpoint_of_another_version(tmp_path):
    ck = tmp_path / "ck.pt"
    torch.save({"version": 0, "complete": False, "epoch": 1}, ck)
    with pytest.raises(LTError, match="interrupted run has version 0.*delete it"):
        train_backbone(tiny_splits(), CFG, "cpu", checkpoint=ck, quiet=True)
    torch.save({"version": 0, "complete": True, "epoch": 1}, ck)  # finished: replaced
    assert len(train_backbone(tiny_splits(), CFG, "cpu", checkpoint=ck, quiet=True).history) == 4


def test_cuda_only_option_on_cpu_is_a_clear_error():
    with pytest.raises(LTError, match="amp = 'bf16' needs CUDA"):
        train_backbone(tiny_splits(), BackboneConfig(epochs=1, amp="bf16"), "cpu", quiet=True)
    with pytest.raises(LTError, match="cuda_graphs = true needs CUDA"):
        train_backbone(tiny_splits(), BackboneConfig(epochs=1, cuda_graphs=True), "cpu",
                       quiet=True)
    with pytest.raises(LTError, match="backbone.amp = 'fp8' is not valid"):
        BackboneConfig.from_params({"amp": "fp8"})


def test_schedule_counts_only_the_steps_taken():
    """9 images at batch 4: the last one-image batch is skipped, so an epoch is 2 steps and
    the cosine schedule must move once per 2 steps."""
    cfg = BackboneConfig(epochs=3, batch_size=4, lr=0.1, base_batch_size=4)
    history = train_backbone(tiny_splits(per_class=(3, 2, 2, 2), size=8), cfg, "cpu",
                             quiet=True).history
    expected = [0.1 * 0.5 * (1 + math.cos(math.pi * e / 3)) for e in (1, 2, 3)]
    assert [row["lr"] for row in history] == pytest.approx(expected)


def test_equal_runs_write_byte_identical_checkpoints(tmp_path):
    for name in ("a.ckpt", "b.ckpt"):
        train_backbone(tiny_splits(), CFG, "cpu", tmp_path / name, 1, quiet=True)
    assert (tmp_path / "a.ckpt").read_bytes() == (tmp_path / "b.ckpt").read_bytes()


def test_stage_refuses_checkpoint_of_another_arch_and_writes_nothing(dvc_dir):
    """An interrupted resnet32 checkpoint, then the stage asked for resnet34: a clear error
    naming the difference, exit code 2, no model and no training log left behind."""
    splits = tiny_splits(size=16)
    write_splits(dvc_dir / "data.h5", splits)
    train_backbone(splits, CFG, "cpu", dvc_dir / "run.ckpt", 1, quiet=True, stop_after=1)
    recipe = {k: v for k, v in CFG.__dict__.items() if k != "seed"}  # seed: --seed (0)
    params = {"backbone": {**recipe, "arch": "resnet34", "device": "cpu"}}
    (dvc_dir / "params.yaml").write_text(yaml.safe_dump(params))
    out = subprocess.run([sys.executable, str(ROOT / "stages/train_backbone.py"), "--quiet",
                          "--data", "data.h5", "--out", "run.pt", "--checkpoint", "run.ckpt",
                          "--curves", "run_log"], cwd=dvc_dir, env=_stage_env(),
                         capture_output=True, text=True)
    assert out.returncode == 2
    assert "arch: checkpoint 'resnet32' vs now 'resnet34'" in out.stderr
    assert "delete" in out.stderr and "Traceback" not in out.stderr
    assert not (dvc_dir / "run.pt").exists() and not (dvc_dir / "run_log").exists()


def test_checkpoint_of_another_class_count_says_so(tmp_path):
    ck = tmp_path / "ck.pt"
    train_backbone(tiny_splits(), CFG, "cpu", ck, 1, quiet=True, stop_after=1)
    with pytest.raises(LTError, match="num_classes: checkpoint 4 vs now 3"):
        train_backbone(tiny_splits(per_class=(40, 20, 10)), CFG, "cpu", ck, quiet=True)
