"""Sharing results, starting where a user starts, from a `git clone` of the project: after the
pipeline has run its status is clean; a DVC remote makes another fresh clone up to date without
re-running anything; commits compare method by method; queued experiments reach the raw data
they need."""
import json

import pytest

from fixtures import make_fashion_mnist
from pipeline_helpers import dvc, fresh_clone, git, set_param

pytestmark = pytest.mark.slow
SMALL = {"data": {"root": "data/raw", "imb_ratio": 20, "max_per_class": 60, "val_per_class": 10},
         "backbone": {"epochs": 1}}


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

    set_param(b, "methods.los.eps", 0.9)
    out = dvc(b, "repro")
    assert "Running stage 'retrain@los'" in out and "retrain@ce'" not in out.replace(
        "Stage 'retrain@ce' didn't change", "")
    git(b, "commit", "-qam", "los eps 0.9")
    diff = json.loads(dvc(b, "metrics", "diff", "HEAD~1", "HEAD", "--json"))
    assert set(diff) == {"metrics/methods/los.json"}, diff  # exactly that method changed
    changed = json.loads(dvc(b, "params", "diff", "HEAD~1", "--json"))["params.yaml"]
    assert list(changed) == ["methods.los.eps"] and changed["methods.los.eps"]["new"] == 0.9


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
