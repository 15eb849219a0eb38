"""Bad input at the command line: a message naming the problem, exit code 2, no output file."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from fixtures import write_gaussian_store

ROOT = Path(__file__).resolve().parents[1]


def run_stage(tmp_path, script, params, *args):
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(params))
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    return subprocess.run([sys.executable, str(ROOT / "stages" / script), "--quiet", *args],
                          cwd=tmp_path, env=env, capture_output=True, text=True)


DATA = {"dataset": "fashion_mnist", "imb_ratio": 10, "max_per_class": 30, "val_per_class": 5,
        "selection": "first"}


@pytest.mark.parametrize("change,needle", [
    ({"imb_ratio": 0.5}, "data.imb_ratio = 0.5 is out of range; valid range: [1, inf)"),
    ({"max_per_class": 1000}, "data.max_per_class = 1000 is larger than the smallest class"),
    ({"dataset": "mnist"}, "valid datasets: cifar10, cifar100, fashion_mnist"),
    ({"selection": "best"}, "data.selection"),
])
def test_prepare_data_rejects_bad_params(tmp_path, fashion_root, change, needle):
    params = {"data": {**DATA, "root": str(fashion_root), **change}}
    out = run_stage(tmp_path, "prepare_data.py", params, "--out", "prep.h5")
    assert out.returncode == 2 and needle in out.stderr, out.stderr
    assert "Traceback" not in out.stderr
    assert not (tmp_path / "prep.h5").exists() and not list(tmp_path.glob(".prep.h5*"))


@pytest.mark.parametrize("script,params,needle", [
    ("prepare_data.py", {"data": {**DATA, "imb_ration": 10}},
     "data: unknown key(s) imb_ration; valid keys: dataset, download, few_below"),
    ("prepare_data.py", {"data": {"dataset": "cifar10", "imb_ratio": 10}},
     "data.longtail = exponential needs data.imb_ratio and data.max_per_class"),
    ("train_backbone.py", {"backbone": {"weight_decy": 0.1}},
     "backbone: unknown key(s) weight_decy; valid keys: amp, arch, base_batch_size"),
    ("extract_features.py", {"features": {"view": 2}}, "features: unknown key(s) view"),
    ("retrain.py", {"data": {"dataset": "toy"}, "methods": {"ce": {}},
                    "retrain": {"seed": [0]}}, "retrain: unknown key(s) seed"),
    ("retrain.py", {"data": {"dataset": "toy"}, "methods": {"ce": {}},
                    "retrain": {"views": -1}}, "retrain.views = -1 is out of range"),
])
def test_typos_and_missing_keys_are_named(tmp_path, script, params, needle):
    args = ["ce"] if script == "retrain.py" else []
    out = run_stage(tmp_path, script, params, *args)
    assert out.returncode == 2 and needle in out.stderr, out.stderr
    assert "Traceback" not in out.stderr


def test_prepare_data_missing_dataset(tmp_path, monkeypatch):
    params = {"data": {**DATA, "dataset": "cifar100", "root": str(tmp_path / "nothing")}}
    out = run_stage(tmp_path, "prepare_data.py", params, "--out", "prep.h5")
    assert out.returncode == 2 and "cifar-100-python" in out.stderr
    assert "data.download: true" in out.stderr and not (tmp_path / "prep.h5").exists()


def _retrain_params(methods, **retrain):
    return {"data": {"dataset": "toy", "imb_ratio": 15.0},
            "retrain": {"seeds": [0], "epochs": 1, "device": "cpu", "views": 0, **retrain},
            "methods": methods}


@pytest.mark.parametrize("methods,key,needle", [
    ({"x": {"method": "nope"}}, "x", "unknown method 'nope'; valid methods: cb_reweight, ce"),
    ({"los": {"eps": 1.2}}, "los", "methods.los.eps = 1.2 is out of range; valid range: [0, 1)"),
    ({"los": {}}, "ce", "no entry 'ce' under `methods:` in params.yaml; entries: los"),
])
def test_retrain_rejects_bad_methods(tmp_path, methods, key, needle):
    write_gaussian_store(tmp_path / "f.h5")
    out = run_stage(tmp_path, "retrain.py", _retrain_params(methods), key, "--features", "f.h5",
                    "--backbone", "none",
                    "--results-root", "out")
    assert out.returncode == 2 and needle in out.stderr, out.stderr
    assert not (tmp_path / "out").exists()


def test_retrain_refuses_store_from_other_dataset(tmp_path):
    write_gaussian_store(tmp_path / "f.h5")
    params = _retrain_params({"ce": {}})
    params["data"]["dataset"] = "cifar100"
    out = run_stage(tmp_path, "retrain.py", params, "ce", "--features", "f.h5",
                    "--backbone", "none",
                    "--results-root", "out")
    assert out.returncode == 2 and "dataset = 'toy' but the params say 'cifar100'" in out.stderr
    assert not (tmp_path / "out").exists()


def test_retrain_refuses_truncated_store(tmp_path):
    path = write_gaussian_store(tmp_path / "f.h5")
    path.write_bytes(path.read_bytes()[:3000])
    out = run_stage(tmp_path, "retrain.py", _retrain_params({"ce": {}}), "ce", "--features",
                    "f.h5", "--backbone", "none",
                    "--results-root", "out")
    assert out.returncode == 2 and "f.h5" in out.stderr and "Traceback" not in out.stderr
    assert not (tmp_path / "out").exists()


def test_retrain_writes_metrics_on_good_input(tmp_path):
    write_gaussian_store(tmp_path / "f.h5")
    out = run_stage(tmp_path, "retrain.py", _retrain_params({"los": {"eps": [0.5, 0.9]}}), "los",
                    "--features", "f.h5", "--backbone", "none",
                    "--results-root", "out")
    assert out.returncode == 0, out.stderr
    import json
    m = json.loads((tmp_path / "out" / "methods" / "los.json").read_text())
    for part in ("details", "plots/epochs", "plots/per_class"):
        assert (tmp_path / "out" / part / "los.json").exists()
    assert all(isinstance(v, (int, float)) for v in m.values())
    assert m["selected_eps_mean"] in (0.5, 0.9) and m["num_heads"] == 2


def test_retrain_refuses_store_of_another_backbone_or_subset(tmp_path):
    (tmp_path / "bb.pt").write_bytes(b"the backbone the params point at")
    import hashlib
    digest = hashlib.sha256(b"another backbone").hexdigest()
    write_gaussian_store(tmp_path / "f.h5", attrs={"checkpoint_sha256": digest,
                                                   "max_per_class": 500})
    params = _retrain_params({"ce": {}})
    out = run_stage(tmp_path, "retrain.py", params, "ce", "--features", "f.h5",
                    "--backbone", "bb.pt", "--results-root", "out")
    assert out.returncode == 2, out.stderr
    assert f"f.h5 was extracted from another backbone than bb.pt (checkpoint sha256 {digest[:12]}" \
        in out.stderr and "dvc repro extract_features" in out.stderr
    params["data"]["max_per_class"] = 400
    out = run_stage(tmp_path, "retrain.py", params, "ce", "--features", "f.h5",
                    "--backbone", "none", "--results-root", "out")
    assert out.returncode == 2 and "max_per_class = 500 but the params say 400" in out.stderr
    assert not (tmp_path / "out").exists()


def test_retrain_records_where_its_numbers_come_from(tmp_path):
    import hashlib
    import json
    (tmp_path / "bb.pt").write_bytes(b"backbone bytes")
    digest = hashlib.sha256(b"backbone bytes").hexdigest()
    store = write_gaussian_store(tmp_path / "f.h5", attrs={"checkpoint_sha256": digest})
    out = run_stage(tmp_path, "retrain.py", _retrain_params({"ce": {}}), "ce", "--features",
                    "f.h5", "--backbone", "bb.pt", "--results-root", "out")
    assert out.returncode == 0, out.stderr
    prov = json.loads((tmp_path / "out/details/ce.json").read_text())["provenance"]
    assert prov["backbone"]["checkpoint_sha256"] == digest
    assert prov["features_sha256"] == hashlib.sha256(store.read_bytes()).hexdigest()
    assert prov["data"]["dataset"] == "toy" and prov["data"]["imb_ratio"] == 15.0
    import torch
    import lttools
    assert prov["versions"]["lttools"] == lttools.__version__
    assert prov["versions"]["torch"] == torch.__version__.split("+")[0]


@pytest.mark.parametrize("script,seeds,needle", [
    ("retrain.py", [], "replicates.seeds = [] must be a non-empty list"),
    ("retrain.py", [0, 1, 0], "names seed(s) [0] more than once"),
    ("retrain.py", [-1], "replicates.seeds = [-1] must be a non-empty list of whole numbers"),
    ("retrain.py", "0, 1", "replicates.seeds = '0, 1' must be a non-empty list"),
    ("train_backbone.py", [1, 1], "names seed(s) [1] more than once"),
    ("report.py", [], "replicates.seeds = [] must be a non-empty list"),
])
def test_bad_backbone_replicates_are_refused(tmp_path, script, seeds, needle):
    params = {**_retrain_params({"ce": {}}), "replicates": {"seeds": seeds}}
    args = ["ce", "--results-root", "out"] if script == "retrain.py" else []
    out = run_stage(tmp_path, script, params, *args)
    assert out.returncode == 2 and needle in out.stderr, out.stderr
    assert "Traceback" not in out.stderr and not (tmp_path / "out").exists()


def test_the_old_backbone_seed_is_named_with_where_it_went(tmp_path):
    out = run_stage(tmp_path, "train_backbone.py", {"backbone": {"seed": 1}})
    assert out.returncode == 2 and "backbone.seed is now replicates.seeds" in out.stderr


def test_retrain_pools_backbone_replicates(tmp_path):
    """One store per replicate ({seed} in --features): the metrics pool every backbone's runs,
    the details keep each backbone's numbers, and the per-image results record the backbones."""
    from lttools.predictions import load_predictions

    for seed in (3, 7):
        write_gaussian_store(tmp_path / str(seed) / "f.h5", seed=seed)
    params = {**_retrain_params({"ce": {}}), "replicates": {"seeds": [3, 7]}}
    out = run_stage(tmp_path, "retrain.py", params, "ce", "--features", "{seed}/f.h5",
                    "--backbone", "none", "--results-root", "out")
    assert out.returncode == 0, out.stderr
    assert "2 backbones x seeds" in out.stdout
    import json
    m = json.loads((tmp_path / "out/methods/ce.json").read_text())
    d = json.loads((tmp_path / "out/details/ce.json").read_text())
    assert m["num_backbones"] == 2 and d["backbones"] == [3, 7]
    per = [b["test_bacc_mean"] for b in d["per_backbone"]]
    assert m["test_bacc_mean"] == pytest.approx(sum(per) / 2)
    assert per[0] != per[1]
    assert [p["replicate"] for p in d["replicate_provenance"]] == [3, 7]
    p = load_predictions(tmp_path / "out/predictions/ce.npz")
    assert p.backbones.tolist() == [3, 7] and p.runs().shape[:2] == (2, 1)
    assert 0 <= m["test_bacc_ci_low"] < m["test_bacc_mean"] < m["test_bacc_ci_high"] <= 100


def test_retrain_refuses_replicates_on_other_test_images(tmp_path):
    write_gaussian_store(tmp_path / "0" / "f.h5")
    write_gaussian_store(tmp_path / "1" / "f.h5", n_test=7)
    params = {**_retrain_params({"ce": {}}), "replicates": {"seeds": [0, 1]}}
    out = run_stage(tmp_path, "retrain.py", params, "ce", "--features", "{seed}/f.h5",
                    "--backbone", "none", "--results-root", "out")
    assert out.returncode == 2 and "not extracted from the same test images" in out.stderr, \
        out.stderr
    assert not (tmp_path / "out").exists()


def test_an_unchanged_checkpoint_is_one_backbone_not_several(tmp_path):
    params = {"replicates": {"seeds": [0, 1]},
              "backbone": {"init": "models/pretrained/mine.pth", "epochs": 0}}
    out = run_stage(tmp_path, "train_backbone.py", params)
    assert out.returncode == 2 and "is one backbone, used as it is" in out.stderr, out.stderr
    assert "replicates: {seeds: [0]}" in out.stderr
