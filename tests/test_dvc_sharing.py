"""Sharing results, starting where a user starts, from a `git clone` of the project: after the
pipeline has run its status is clean; a DVC remote makes another fresh clone up to date without
re-running anything; commits compare method by method (`dvc metrics diff`, `lttools compare`,
also from outputs only in the remote); queued experiments reach the raw data they need; docs/compare.md's
backbone x method matrix runs as written."""
import json
import re
import shutil
import subprocess
import sys

import pytest

from fixtures import make_fashion_mnist
from lttools.predictions import load_predictions, save_predictions
from pipeline_helpers import doc_recipe, dvc, env, fresh_clone, git, run_lines, set_param

pytestmark = pytest.mark.slow
SMALL = {"data": {"root": "data/raw", "imb_ratio": 20, "max_per_class": 60, "val_per_class": 10},
         "backbone": {"epochs": 1}, "replicates": {"seeds": [0, 1, 2]}}


@pytest.fixture(scope="module")
def clone_a(tmp_path_factory):
    """Clone A: a fresh clone of the project, raw data in the (git-ignored) data/raw, the
    pipeline run (`dvc repro`, as `make demo` runs it) and clean, committed, its cached outputs
    pushed to a local-directory remote."""
    a = fresh_clone(tmp_path_factory.mktemp("clones") / "a", SMALL, methods=["ce", "los"])
    make_fashion_mnist(a / "data" / "raw", per_class=80, test_per_class=10)
    dvc(a, "repro")
    assert json.loads(dvc(a, "status", "--json")) == {}  # every pipeline in the clone is up to date
    dvc(a, "remote", "add", "-d", "shared", str(tmp_path_factory.mktemp("remote")))
    git(a, "add", "-A")
    git(a, "commit", "-qm", "results")
    assert "data/raw" not in git(a, "ls-files")  # raw data stays out of git
    dvc(a, "push")
    return a


def test_a_pulled_clone_is_up_to_date_and_commits_compare_per_method(clone_a, tmp_path):
    b = tmp_path / "b"
    git(tmp_path, "clone", "-q", str(clone_a), str(b))
    dvc(b, "pull")
    assert json.loads(dvc(b, "status", "--json")) == {}
    assert "Running stage" not in dvc(b, "repro")  # nothing is trained again

    set_param(b, "methods.los.lr", 0.05)  # 100x the default: the predictions change
    out = dvc(b, "repro")
    assert "Running stage 'retrain@los'" in out and "retrain@ce'" not in out.replace(
        "Stage 'retrain@ce' didn't change", "")
    git(b, "commit", "-qam", "los lr 0.05")
    diff = json.loads(dvc(b, "metrics", "diff", "HEAD~1", "HEAD", "--json"))
    assert set(diff) == {"metrics/methods/los.json"}, diff  # exactly that method changed
    changed = json.loads(dvc(b, "params", "diff", "HEAD~1", "--json"))["params.yaml"]
    assert list(changed) == ["methods.los.lr"] and changed["methods.los.lr"]["new"] == 0.05
    shown = json.loads(dvc(b, "metrics", "show", "--json"))
    assert "test_bacc_ci_low" in json.dumps(shown)  # the intervals travel with the metrics

    table = json.loads(compare(b, "HEAD~1", "HEAD", "--json").stdout)
    assert [r["label"] for r in table["revisions"]] == ["methods.los.lr unset",
                                                        "methods.los.lr=0.05"]
    ce, los = table["methods"]["ce"], table["methods"]["los"]
    assert ce[1]["verdict"] == "no change" and ce[1]["change"] == 0
    assert los[1]["verdict"] in ("better", "worse", "no significant difference", "equivalent")
    assert los[1]["change"] != 0 and 0 < los[1]["p_adjusted"] <= 1
    for cell in (*ce, *los):
        assert cell["ci_low"] <= cell["test_bacc"] <= cell["ci_high"]
    assert (b / "comparison" / "compare.md").exists()
    page = (b / "comparison" / "compare.html").read_text()
    assert "<table>" in page and "http://" not in page and "https://" not in page  # offline

    # the per-image results travel with Git: no DVC cache and no remote, the same table
    shutil.rmtree(b / ".dvc" / "cache")
    dvc(b, "remote", "remove", "shared")
    assert json.loads(compare(b, "HEAD~1", "HEAD", "--json").stdout) == table
    git(b, "checkout", "--", ".dvc/config")

    # a revision on other test images: not paired, and the note says why
    for path in (b / "metrics" / "predictions").glob("*.npz"):
        p = load_predictions(path)
        p.test_set = dict(p.test_set, raw_sha256="another copy of the data")
        save_predictions(path, p)
    other = json.loads(compare(b, "HEAD", "workspace", "--json").stdout)
    assert any("not paired" in n and "raw data files" in n for n in other["notes"]), other
    assert other["methods"]["los"][1]["verdict"] == "not paired (other test set)"
    assert other["methods"]["los"][1]["ci_low"] is not None and \
        other["methods"]["los"][1]["change"] is None

    missing = compare(b, "HEAD", "no-such-rev", check=False)
    assert missing.returncode == 2 and "no revision named 'no-such-rev'" in missing.stderr


def test_a_fresh_clone_runs_the_pipeline_and_compares_with_head_without_a_remote(clone_a,
                                                                                tmp_path):
    """A newcomer's clone: no DVC remote, an empty cache. `dvc repro` trains everything again;
    `lttools compare HEAD workspace` reads HEAD's per-image results from Git and pairs them
    with the clone's own, method by method (on this machine, the same bytes: no change)."""
    c = tmp_path / "c"
    git(tmp_path, "clone", "-q", str(clone_a), str(c))
    dvc(c, "remote", "remove", "shared")
    shutil.copytree(clone_a / "data" / "raw", c / "data" / "raw")  # the same raw files
    assert "Running stage 'train_backbone@0'" in dvc(c, "repro")
    table = json.loads(compare(c, "HEAD", "workspace", "--json").stdout)
    assert set(table["methods"]) == {"ce", "los"} and not table["notes"], table["notes"]
    assert [v["backbones"] for v in table["noise"]] == [3, 3]  # both pool 3 backbones
    assert "pools 3 backbone replicates" in table["description"]
    for cells in table["methods"].values():
        for cell in cells:
            assert 0 <= cell["ci_low"] <= cell["test_bacc"] <= cell["ci_high"] <= 100
        assert cells[1]["verdict"] in ("no change", "equivalent", "no significant difference"), \
            cells[1]


def test_backbone_replicates_pool_as_written(clone_a, tmp_path):
    """docs/how-sure.md's recipe, as written: three more backbones as an experiment (only
    those trained), then one leaderboard pooled over the six, each method with its six
    backbones' numbers."""
    b = tmp_path / "b"
    git(tmp_path, "clone", "-q", str(clone_a), str(b))
    shutil.copytree(clone_a / "data" / "raw", b / "data" / "raw")
    dvc(b, "pull")
    lines = doc_recipe("how-sure.md", "backbone replicates")
    outs = run_lines(b, lines)
    trained = [line for line in outs[0].stdout.splitlines()
               if line.startswith("Running stage 'train_backbone")]
    assert sorted(trained) == [f"Running stage 'train_backbone@{s}':" for s in (3, 4, 5)]
    out = outs[-1].stdout
    assert "6 backbone replicates pooled" in out and "| 1 |" in out and "| ce |" in out
    pooled = json.loads(compare(b, "--pool", "HEAD", "more", "--json").stdout)
    assert {m["method"] for m in pooled["methods"]} == {"ce", "los"}
    for m in pooled["methods"]:
        assert len(m["per_backbone"]) == 6  # one stage-1 epoch on tiny data: maybe at chance
        assert 0 <= m["ci_low"] <= m["estimate"] <= m["ci_high"] <= 100
        shares = sum(m["noise"].values())  # none when every resample scores the same
        assert shares == pytest.approx(1) or shares == 0
    assert (b / "comparison" / "pooled.md").exists()


def test_shared_experiments_are_listed_after_a_new_commit(clone_a, tmp_path):
    """docs/more-than-one-machine.md's recipe for experiments, as written (EXP named): after a
    new commit, `dvc exp list origin` no longer shows the experiment (its baseline is not HEAD);
    the recipe's `--all-commits` does."""
    b = tmp_path / "b"
    git(tmp_path, "clone", "-q", str(clone_a), str(b))
    dvc(b, "pull")
    dvc(b, "exp", "run", "-n", "los-eps", "-S", "methods.los.eps=0.9")
    push, listing, pull = [line.replace("EXP", "los-eps") for line in
                           doc_recipe("more-than-one-machine.md", "sharing experiments")]
    run_lines(b, [push])
    assert "los-eps" in dvc(b, "exp", "list", "origin")
    git(b, "commit", "-q", "--allow-empty", "-m", "a later commit")
    assert "los-eps" not in dvc(b, "exp", "list", "origin")  # what the page warns of
    assert "los-eps" in run_lines(b, [listing])[0].stdout
    run_lines(b, [pull])
    assert "los-eps" in dvc(clone_a, "exp", "list", "--all-commits")


def compare(repo, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "lttools.cli", "compare", *args], cwd=repo,
                         env=env(), capture_output=True, text=True)
    assert not check or out.returncode == 0, out.stderr
    return out


def test_two_queued_experiments_run_at_once_with_the_raw_data(clone_a):
    """Each queued experiment runs in a temporary workspace: a change to the data params
    re-runs prepare_data there, which needs the git-ignored raw files (--copy-paths)."""
    dvc(clone_a, "exp", "run", "--queue", "--copy-paths", "data/raw",
        "-S", "data.imb_ratio=10,30")
    dvc(clone_a, "queue", "start", "-j", "2")

    def tasks():  # (task id, status) rows of the table before the "Worker status" line
        table = dvc(clone_a, "queue", "status").split("\n\n")[0].splitlines()[1:]
        return [(row.split()[0], row.split()[-1]) for row in table if row.strip()]

    for task, status in tasks():
        if status in ("Queued", "Running"):
            dvc(clone_a, "queue", "logs", "-f", task)  # follows the task until it ends
    statuses = [s for _, s in tasks()]
    assert statuses == ["Success", "Success"], dvc(clone_a, "queue", "status")
    shown = json.dumps(json.loads(dvc(clone_a, "exp", "show", "--json")))
    assert '"imb_ratio": 10' in shown and '"imb_ratio": 30' in shown


def test_readme_backbone_matrix_runs_as_written(clone_a):
    """docs/compare.md's backbone x method matrix: two stage-1 variants as queued DVC
    experiments, then `lttools compare` with the experiments' names as revisions."""
    lines = doc_recipe("compare.md", "backbone matrix")
    assert lines[-1].startswith("lttools compare ")
    # one backbone per setting here: the recipe's 20 stage-1 epochs for 2 x 3 replicates would
    # cost minutes, and replicates are tested by the fresh-clone and --pool tests
    original = (clone_a / "params.yaml").read_text()
    set_param(clone_a, "replicates.seeds", [0])
    try:
        table = run_lines(clone_a, lines)[-1].stdout
    finally:
        (clone_a / "params.yaml").write_text(original)
    assert "backbone.weight_decay=0.0005" in table and "backbone.weight_decay=0.005" in table
    rows = [r for r in table.splitlines() if r.startswith("| ce |") or r.startswith("| los |")]
    assert len(rows) == 4  # accuracy and LoMa / RSD tables
    assert re.search(r"\| ce \| \d+\.\d\d \[\d+\.\d\d, \d+\.\d\d\] \| \d+\.\d\d \[", table)
    assert re.search(r"\| stage-1 head \(no re-training\) \| \d+\.\d\d \| \d+\.\d\d \|", table)
