"""torchrun with 2 processes (gloo on CPU) matches one process with the same global batch."""
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml

from lttools.data.prepared import write_splits
from lttools.backbone.distributed import DistContext, GlobalBatchNorm2d, convert_batchnorm
from lttools.errors import LTError
from lttools.models import create_backbone
from lttools.backbone.config import BackboneConfig
from lttools.backbone.train import train_backbone
from lttools.backbone.training_log import read_curves
from test_train import tiny_splits

ROOT = Path(__file__).resolve().parents[1]


def test_shards_partition_the_global_batch():
    batch = torch.arange(12)
    parts = [DistContext(r, 3).shard(batch) for r in range(3)]
    assert torch.equal(torch.cat(parts), batch)


def test_global_batch_must_divide_by_world_size(monkeypatch):
    monkeypatch.setenv("WORLD_SIZE", "3")
    monkeypatch.setenv("RANK", "0")
    with pytest.raises(LTError, match="batch_size = 16 .* divisible by the number of processes"):
        train_backbone(tiny_splits(), BackboneConfig(epochs=1, batch_size=16), "cpu", quiet=True)


def _random_image_splits():
    """Noise images: the class-prototype images of tiny_splits make BatchNorm variances so
    small that float32 rounding alone separates two reduction orders."""
    splits = tiny_splits(per_class=(40, 20, 10, 6))
    rng = np.random.RandomState(0)
    for k, v in splits.images.items():
        splits.images[k] = rng.randint(0, 256, v.shape).astype(np.uint8)
    return splits


def _relative_gap(a: dict, b: dict) -> float:
    keys = [k for k in a if "running" not in k and "num_batches" not in k]
    va = torch.cat([a[k].flatten().double() for k in keys])
    vb = torch.cat([b[k].flatten().double() for k in keys])
    return float((va - vb).norm() / va.norm())


def test_torchrun_two_processes_matches_single_process(dvc_dir):
    tmp_path = dvc_dir
    write_splits(tmp_path / "data.h5", _random_image_splits())
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")

    def train(tag, launcher, **overrides):
        params = {"backbone": {"arch": "resnet32", "epochs": 1, "batch_size": 16, "lr": 0.05,
                               "device": "cpu", "sync_bn": True, **overrides}}
        (tmp_path / f"{tag}.yaml").write_text(yaml.safe_dump(params))
        out = subprocess.run(
            launcher + [str(ROOT / "stages/train_backbone.py"), "--quiet", "--seed", "3", "--params",
                        f"{tag}.yaml", "--data", "data.h5", "--out", f"{tag}.pt", "--checkpoint",
                        f"{tag}.ckpt", "--curves", f"{tag}_log"],
            cwd=tmp_path, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stderr[-3000:]
        return torch.load(tmp_path / f"{tag}.pt", weights_only=True)["state_dict"]

    torchrun = [sys.executable, "-m", "torch.distributed.run", "--standalone",
                "--nproc_per_node", "2"]
    single = train("single", [sys.executable])
    synced = train("ddp", torchrun)
    per_shard_bn = train("ddp_nosync", torchrun, sync_bn=False)
    assert [r["epoch"] for r in read_curves(tmp_path / "ddp_log")] == [1]  # rank 0 logs once
    assert single.keys() == synced.keys()
    gap = _relative_gap(single, synced)
    assert gap < 1e-3, gap  # float32 reduction order only
    # without synchronised BatchNorm each rank normalises by its own 8 images: a real change
    assert _relative_gap(single, per_shard_bn) > 10 * gap


@pytest.mark.parametrize("device,kind", [("cpu", GlobalBatchNorm2d),
                                         ("cuda", torch.nn.SyncBatchNorm)])
def test_convert_batchnorm_keeps_state_dict_names(device, kind):
    model = create_backbone("resnet32", 5, 3)
    before = model.state_dict()
    converted = convert_batchnorm(model, torch.device(device))  # no CUDA needed to convert
    bns = [m for m in converted.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert bns and all(type(m) is kind for m in bns)
    after = converted.state_dict()
    assert after.keys() == before.keys()
    assert all(torch.equal(after[k], before[k]) for k in before)
