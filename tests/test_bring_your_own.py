"""Stage 2 for any backbone: a checkpoint from elsewhere (`backbone.init`), used as it is or
fine-tuned, with a head fitted when it has none for these classes; and features from
elsewhere, through their own DVC pipeline (examples/imported, copied as docs/bring-a-backbone.md says), equal
to the native run."""
import json
import subprocess
import time

import h5py
import numpy as np
import pytest
import torch
import yaml

from fixtures import make_cifar, make_fashion_mnist
from lttools.backbone.config import BackboneConfig
from lttools.backbone.train import train_backbone
from lttools.errors import LTError
from lttools.features.arrays import ImportConfig, import_arrays
from lttools.features.store import open_store
from lttools.models import create_backbone
from lttools.models.normalized import IMAGENET_MEAN
from pipeline_helpers import (DOCS, check_metric_values, doc_recipe, dvc, git, make_repo,
                              run_lines, set_param)
from test_import_weights import ldam
from test_train import tiny_splits

INIT = "models/pretrained/ldam_c100.pth"


def ldam_checkpoint(path, seed=0):
    """A 'released' LDAM-DRW ResNet-32 for 100 classes (another class count than ours)."""
    torch.manual_seed(seed)
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save({"state_dict": ldam(create_backbone("resnet32", 100, 3).state_dict())}, path)


def test_fine_tuning_starts_from_the_checkpoint(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.manual_seed(5)
    source = create_backbone("resnet32", 4, 1)
    (tmp_path / "models/pretrained").mkdir(parents=True)
    torch.save(source.state_dict(), tmp_path / "models/pretrained/mine.pth")
    cfg = BackboneConfig(epochs=1, batch_size=16, lr=1e-6, init="models/pretrained/mine.pth",
                         seed=0)
    tuned = train_backbone(tiny_splits(), cfg, "cpu", quiet=True).model.state_dict()
    fresh = train_backbone(tiny_splits(), BackboneConfig(epochs=1, batch_size=16, lr=1e-6),
                           "cpu", quiet=True).model.state_dict()
    w = "layers.3.conv1.weight"
    assert torch.allclose(tuned[w], source.state_dict()[w], atol=1e-4)  # barely moved from it
    assert not torch.allclose(fresh[w], source.state_dict()[w], atol=1e-2)
    as_is = train_backbone(tiny_splits(), BackboneConfig(epochs=0, init=cfg.init), "cpu",
                           quiet=True)
    assert as_is.head == "checkpoint" and as_is.history == []
    assert torch.equal(as_is.model.state_dict()["fc.weight"], source.state_dict()["fc.weight"])


@pytest.mark.parametrize("cfg,want", [
    (dict(normalization="imagenet"), [sum(IMAGENET_MEAN) / 3]),  # grayscale: their average
    (dict(normalization="explicit", mean=[0.5], std=[0.25]), [127.5]),
])
def test_normalization_of_imported_weights(tmp_path, monkeypatch, cfg, want):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "models/pretrained").mkdir(parents=True)
    torch.save(create_backbone("resnet32", 4, 1).state_dict(), tmp_path / "models/pretrained/m.pth")
    result = train_backbone(tiny_splits(), BackboneConfig(epochs=0, init="models/pretrained/m.pth",
                                                          **cfg), "cpu", quiet=True)
    assert result.model.mean.flatten().tolist() == pytest.approx(want)


@pytest.mark.parametrize("params,needle", [
    ({"epochs": 0}, "backbone.epochs = 0 is out of range; valid range: [1, inf)"),
    ({"init": "/elsewhere/x.pth"}, "lies outside models/pretrained/"),
    ({"normalization": "explicit"}, "backbone.mean and backbone.std"),
    ({"normalization": "zscore"}, "backbone.normalization = 'zscore' is not valid"),
])
def test_bad_init_params(params, needle):
    with pytest.raises(LTError) as err:
        BackboneConfig.from_params(params)
    assert needle in str(err.value)


@pytest.mark.slow
def test_a_released_checkpoint_with_another_class_count_gets_a_fitted_head(tmp_path):
    """backbone.init with epochs 0: no training; the checkpoint has no head for these 10
    classes, so one is fitted on the cached features, and the store says how."""
    repo = tmp_path / "repo"
    make_cifar(repo / "data" / "raw", "cifar10", per_class=50, test_per_class=5)
    ldam_checkpoint(repo / INIT)
    make_repo(repo, {"data": {"dataset": "cifar10", "root": "data/raw", "imb_ratio": 10,
                              "max_per_class": 40, "val_per_class": 10},
                     "backbone": {"init": INIT, "epochs": 0, "normalization": "imagenet",
                                  "arch": "resnet32"},
                     "features": {"head_epochs": 5}}, methods=["ce", "los"])
    out = dvc(repo, "repro")
    assert "no head for 10 classes in the checkpoint (found: linear.weight (64, 100))" in out
    store = open_store(repo / "data/features/0/features.h5")
    assert store.attrs["head_source"].startswith("fitted: cross-entropy on the clean cached "
                                                 "training features")
    norm = json.loads(store.attrs["normalization"])
    assert norm["normalization"] == "imagenet" and norm["init"] == INIT
    for key in ("ce", "los"):
        check_metric_values(key, json.loads((repo / f"metrics/methods/{key}.json").read_text()))
    details = json.loads((repo / "metrics/details/ce.json").read_text())
    assert details["provenance"]["backbone"]["head"].startswith("fitted")


@pytest.mark.slow
@pytest.mark.parametrize("dvc_add", [True, False], ids=["as-written", "without-dvc-add"])
def test_a_backbone_you_bring_stays_out_of_git(tmp_path, dvc_add):
    """docs/bring-a-backbone.md's commands as written: the checkpoint goes into DVC's cache,
    and `dvc exp run`, which commits untracked files into the experiment, leaves it out of Git.
    Skipping `dvc add`, the ignore rule alone still keeps it out."""
    repo = tmp_path / "repo"
    make_fashion_mnist(repo / "data" / "raw", per_class=60, test_per_class=10)
    make_repo(repo, {"data": {"root": "data/raw", "imb_ratio": 10, "max_per_class": 40,
                              "val_per_class": 10}}, methods=["ce"])
    torch.manual_seed(0)
    torch.save(create_backbone("resnet32", 10, 1).state_dict(), repo / "resnet50_mine.pth")
    lines = doc_recipe("bring-a-backbone.md", "bring a backbone")
    assert lines[0] == "cp resnet50_mine.pth models/pretrained/"
    run_lines(repo, lines if dvc_add else lines[:1])
    dvc(repo, "exp", "run", "-n", "mine", "-S", "backbone.init=models/pretrained/resnet50_mine.pth",
        "-S", "backbone.epochs=0")
    ref = next(r for r in git(repo, "for-each-ref", "--format=%(refname)", "refs/exps").split()
               if r.endswith("/mine"))
    tree = git(repo, "ls-tree", "-r", "--name-only", ref).split()
    assert "models/pretrained/resnet50_mine.pth" not in tree
    assert ("models/pretrained/resnet50_mine.pth.dvc" in tree) == dvc_add
    assert "metrics/methods/ce.json" in tree
    if dvc_add:
        assert json.loads(dvc(repo, "status", "--json")) == {}


def _arrays(tmp_path, **changes):
    rng = np.random.default_rng(0)
    arrays = {"train_features": rng.standard_normal((3, 40, 6)).astype(np.float32),
              "train_labels": np.repeat(np.arange(4), [20, 10, 6, 4]),
              "val_features": rng.standard_normal((8, 6)).astype(np.float32),
              "val_labels": np.arange(8) % 4,
              "test_features": rng.standard_normal((2, 12, 6)).astype(np.float32),
              "test_labels": np.arange(12) % 4}
    arrays.update(changes)
    arrays = {k: v for k, v in arrays.items() if v is not None}
    path = tmp_path / "f.npz"
    np.savez(path, **arrays)
    return path


def test_import_fits_a_head_and_records_it(tmp_path):
    attrs = import_arrays(ImportConfig(str(_arrays(tmp_path)), "mine", head_epochs=3),
                          tmp_path / "s.h5")
    store = open_store(tmp_path / "s.h5", expect={"dataset": "mine"})
    assert store.views == {"train": 3, "val": 1, "test": 2} and store.head_weight.shape == (4, 6)
    assert store.attrs["head_source"].startswith("fitted")
    assert attrs["imb_ratio"] == 5.0 and store.attrs["checkpoint_sha256"] == ""


@pytest.mark.parametrize("changes,needle", [
    ({"train_labels": np.zeros(39, int)}, "train_labels has 39 entries but train_features has 40"),
    ({"test_labels": np.arange(12) % 4 + 3}, "test_labels lie in [3, 6], outside [0, 3]"),
    ({"train_features": np.full((40, 6), np.nan, np.float32)}, "train_features (view 0) hold NaN"),
    ({"test_features": np.zeros((12, 5), np.float32)}, "test_features are 5-d, train_features 6-d"),
    ({"val_labels": None}, "val_features and val_labels go together"),
    ({"head_weight": np.zeros((4, 6), np.float32)}, "head_weight and head_bias go together"),
    ({"head_weight": np.zeros((3, 6), np.float32), "head_bias": np.zeros(3, np.float32)},
     "lie in [0, 3], outside [0, 2]"),
    ({"train_features": np.zeros((40, 6), int)}, "train_features must be floats"),
    ({"extra": np.zeros(2)}, "unknown key(s) extra"),
    ({"test_labels": None}, "lacks test_labels"),
])
def test_bad_arrays_are_named(tmp_path, changes, needle):
    with pytest.raises(LTError) as err:
        import_arrays(ImportConfig(str(_arrays(tmp_path, **changes)), "x"), tmp_path / "s.h5")
    assert needle in str(err.value)
    assert not (tmp_path / "s.h5").exists() and not list(tmp_path.glob(".s.h5*"))


def test_import_reads_pt_and_npy_folders(tmp_path):
    path = _arrays(tmp_path)
    with np.load(path) as npz:
        arrays = {k: npz[k] for k in npz.files}
    torch.save({k: torch.from_numpy(v) for k, v in arrays.items()}, tmp_path / "f.pt")
    (tmp_path / "npy").mkdir()
    for k, v in arrays.items():
        np.save(tmp_path / "npy" / f"{k}.npy", v)
    stores = []
    for i, source in enumerate((path, tmp_path / "f.pt", tmp_path / "npy")):
        import_arrays(ImportConfig(str(source), "x", head_epochs=2), tmp_path / f"{i}.h5")
        with h5py.File(tmp_path / f"{i}.h5") as f:
            stores.append((f["train/features"][()], f["head/weight"][()]))
    for feats, head in stores[1:]:
        np.testing.assert_array_equal(feats, stores[0][0])
        np.testing.assert_array_equal(head, stores[0][1])


@pytest.mark.slow
def test_imported_features_pipeline_equals_the_native_run(tmp_path):
    """docs/bring-a-backbone.md's recipe as written: the example is outside the DVC graph (a clean `dvc status`
    after the demo); `cp -r examples/imported pipelines/imported` and `dvc repro` there export
    the native store, import it and, with the same retrain params, give the same numbers;
    editing a method there re-runs only that method; the project's status is clean after."""
    repo = tmp_path / "repo"
    make_fashion_mnist(repo / "data" / "raw", per_class=60, test_per_class=10)
    methods = ["ce", "los", "posthoc_la"]
    make_repo(repo, {"data": {"root": "data/raw", "imb_ratio": 10, "max_per_class": 40,
                              "val_per_class": 10}, "backbone": {"epochs": 1}}, methods=methods,
              imported=True)
    dvc(repo, "repro")
    assert json.loads(dvc(repo, "status", "--json")) == {}  # the example is not in the graph
    copy = next(line.split("#")[0] for line in (DOCS / "bring-a-backbone.md").read_text().splitlines()
                if line.startswith("mkdir -p pipelines && cp -r examples/imported"))
    subprocess.run(["bash", "-c", copy], cwd=repo, check=True)  # the page's line, as written
    imported = repo / "pipelines" / "imported"
    main = yaml.safe_load((repo / "params.yaml").read_text())
    params = yaml.safe_load((imported / "params.yaml").read_text())
    params.update(retrain=main["retrain"], methods=main["methods"])
    (imported / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    t0 = time.perf_counter()
    out = dvc(imported, "repro")
    seconds = time.perf_counter() - t0
    assert "Running stage 'export_features'" in out and "Running stage 'import_features'" in out
    ran = [line for line in out.splitlines() if line.startswith("Running stage")]
    assert not any(s in " ".join(ran) for s in ("train_backbone", "extract_features")), ran
    for key in methods:
        native = json.loads((repo / f"metrics/methods/{key}.json").read_text())
        again = json.loads((imported / f"metrics/methods/{key}.json").read_text())
        assert again == native, key
    rows = lambda p: [l for l in p.read_text().splitlines() if l.startswith("| 1") or  # noqa: E731
                      l.startswith("| 2") or l.startswith("| 3")]
    assert rows(imported / "metrics/leaderboard.md") == rows(repo / "metrics/leaderboard.md")
    print(f"imported pipeline: dvc repro {seconds:.1f} s")

    set_param(imported, "methods.los.eps", 0.9)
    out = dvc(imported, "repro")
    assert "Running stage 'retrain@los'" in out
    assert "Running stage 'retrain@ce'" not in out and "import_features'" not in out.replace(
        "Stage 'import_features' didn't change", "")
    assert json.loads(dvc(repo, "status", "--json")) == {}
