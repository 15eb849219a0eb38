"""`lttools sweep`: points and backbone groups from -S overrides, cluster settings, the sweep
record and its statuses, pushes that meet; end to end on submitit's local executor and on a
real one-node Slurm (tests/slurm/one_node.sh): the docs' example as written, results in
`dvc exp show` and `lttools compare`, a shared backbone trained once, a cancelled job
reported, re-submitted alone, and the shared cache holding no partial output."""
from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from lttools.errors import LTError
from lttools.sweep import jobs
from lttools.sweep.grid import make_points
from lttools.sweep.record import Job, Sweep, load_sweep
from lttools.sweep.settings import load_settings
from lttools.sweep.status import job_states, to_retry
from lttools.sweep.submit import check_clean
from pipeline_helpers import ROOT, doc_recipe, dvc, env, git, run_lines, sweep_repo

PARAMS = yaml.safe_load((ROOT / "params.yaml").read_text())
DVC_YAML = ROOT / "dvc.yaml"


def test_points_and_their_backbone_groups():
    points = make_points(["backbone.weight_decay=5e-4,5e-3", "methods.los.eps=0.9,0.98"], "wd",
                         DVC_YAML, PARAMS)
    assert [p.name for p in points] == ["wd-1", "wd-2", "wd-3", "wd-4"]
    assert len({p.overrides for p in points}) == 4
    assert sorted(p.group for p in points) == [0, 0, 1, 1]  # weight decay decides the backbone
    for p in points:  # points of one group agree on every param of the expensive stages
        same = [q for q in points if q.group == p.group]
        assert len({[o for o in q.overrides if o.startswith("backbone.")][0] for q in same}) == 1
    stage2_only = make_points(["methods.los.eps=0.9,0.95,0.98"], "los", DVC_YAML, PARAMS)
    assert {p.group for p in stage2_only} == {0}
    by_data = make_points(["data.imb_ratio=10,50", "features.views=1"], "ir", DVC_YAML, PARAMS)
    assert [p.group for p in by_data] == [0, 1]


@pytest.mark.parametrize("overrides,name,needle", [
    (["backbone.wd=1"], "x", "-S backbone.wd: params.yaml has no such key"),
    (["methods.los.eps"], "x", "write key=value"),
    (["methods.los.eps=0.9"], "bad name", "--name 'bad name'"),
])
def test_bad_sweeps_are_refused_before_anything_is_submitted(overrides, name, needle):
    with pytest.raises(LTError) as err:
        make_points(overrides, name, DVC_YAML, PARAMS)
    assert needle in str(err.value)


def test_cluster_settings_from_the_untracked_file_and_flags(tmp_path):
    (tmp_path / ".lttools").mkdir()
    (tmp_path / ".lttools/cluster.yaml").write_text(yaml.safe_dump(
        {"partition": "gpu", "setup": ["module load cuda"], "backbone": {"gpus": 2}}))
    s = load_settings(tmp_path, {"cluster": "local", "partition": None})
    assert (s.cluster, s.partition, s.setup) == ("local", "gpu", ["module load cuda"])
    assert s.resources("backbone").gpus == 2 and s.resources("point").gpus == 0
    for bad, needle in (({"cluster": "pbs"}, "cluster = 'pbs'"),
                        ({"backbone": {"gpus": -1}}, "backbone.gpus = -1 is out of range"),
                        ({"gpu": 1}, "unknown key(s) gpu"),
                        ({"point": {"time": 5}}, "unknown key(s) time")):
        (tmp_path / ".lttools/cluster.yaml").write_text(yaml.safe_dump(bad))
        with pytest.raises(LTError) as err:
            load_settings(tmp_path, {})
        assert needle in str(err.value)


def test_a_dirty_workspace_is_refused(tmp_path):
    git(tmp_path, "init", "-q")
    (tmp_path / "params.yaml").write_text("a: 1\n")
    git(tmp_path, "add", "-A")
    git(tmp_path, "commit", "-qm", "x")
    assert len(check_clean(tmp_path)) == 40
    (tmp_path / "params.yaml").write_text("a: 2\n")
    with pytest.raises(LTError) as err:
        check_clean(tmp_path)
    assert "uncommitted changes" in str(err.value) and "params.yaml" in str(err.value)


def _record(tmp_path, cluster="local") -> Sweep:
    jobs_ = [Job("backbone-0", "backbone", ["111"], group=0),
             Job("backbone-1", "backbone", ["112"], group=1),
             Job("p-1", "point", ["113"], group=0), Job("p-2", "point", ["114"], group=0),
             Job("p-3", "point", ["115"], group=1), Job("p-4", "point", ["999999999"], group=0)]
    sweep = Sweep("s1", str(tmp_path), "0" * 40, cluster, 0.0, {}, jobs_)
    sweep.save()
    reports = sweep.folder / "reports"
    reports.mkdir(parents=True)
    for key, state in (("backbone-0", "done"), ("backbone-1", "failed"), ("p-1", "done"),
                       ("p-2", "failed"), ("p-3", "cancelled")):
        (reports / f"{key}.json").write_text(json.dumps({"state": state, "error": "boom"}))
    return sweep


def test_statuses_from_the_record_and_what_a_retry_submits(tmp_path):
    _record(tmp_path)
    sweep = load_sweep(tmp_path)  # re-attached from the record alone
    states = {s.key: s.state for s in job_states(sweep)}
    # p-4 wrote no report and its process is gone: cancelled (killed before it could report)
    assert states == {"backbone-0": "done", "backbone-1": "failed", "p-1": "done",
                      "p-2": "failed", "p-3": "cancelled", "p-4": "cancelled"}
    assert to_retry(sweep, job_states(sweep)) == ["p-2", "backbone-1", "p-3", "p-4"]
    out = subprocess.run([sys.executable, "-m", "lttools.cli", "sweep", "status"], cwd=tmp_path,
                         env=env(), capture_output=True, text=True)
    assert out.returncode == 1 and "| p-2 | point | 114 | failed (boom) |" in out.stdout
    with pytest.raises(LTError) as err:
        load_sweep(tmp_path, "nope")
    assert "no sweep 'nope'; recorded: s1" in str(err.value)


def test_a_push_is_retried_when_another_holds_the_lock(monkeypatch):
    calls = []

    def flaky(spec, work, *args):
        calls.append(args)
        if len(calls) < 3:
            raise LTError("cannot lock ref")

    monkeypatch.setattr(jobs, "_dvc", flaky)
    monkeypatch.setattr(jobs.time, "sleep", lambda s: None)
    jobs._push(jobs.JobSpec("p-1", "point", "src", "rev", (), "r", "s", cache="c", push_to="dst"),
               Path("."))
    assert len(calls) == 3 and calls[-1] == ("exp", "push", "--no-cache", "dst", "p-1")
    monkeypatch.setattr(jobs, "_dvc", lambda *a: (_ for _ in ()).throw(jobs.Stopped("killed")))
    with pytest.raises(jobs.Stopped):  # a cancelled job does not try again
        jobs._push(jobs.JobSpec("p-1", "point", "src", "rev", (), "r", "s", push_to="d"), Path("."))


@pytest.mark.slow
def test_two_pushes_of_experiments_at_once(tmp_path):
    """Two jobs push their experiments into one repository at the same moment: both arrive."""
    user = tmp_path / "user"
    user.mkdir()
    git(user, "init", "-q")
    dvc(user, "init", "-q")
    (user / "params.yaml").write_text("x: 1\n")
    (user / "dvc.yaml").write_text(yaml.safe_dump({"stages": {"echo": {
        "cmd": "python -c \"import yaml; print(yaml.safe_load(open('params.yaml')))\" > out.txt",
        "params": ["x"], "outs": ["out.txt"]}}}))
    dvc(user, "repro")
    git(user, "add", "-A")
    git(user, "commit", "-qm", "a pipeline")
    clones = []
    for name in ("a", "b"):
        clone = tmp_path / name
        git(tmp_path, "clone", "-q", str(user), str(clone))
        dvc(clone, "config", "--local", "cache.dir", str(user / ".dvc/cache"))
        dvc(clone, "exp", "run", "-n", f"exp-{name}", "-S", f"x={ord(name)}")
        clones.append(clone)
    specs = [jobs.JobSpec(f"exp-{c.name}", "point", "", "", (), "", "", cache="shared",
                          push_to=str(user), env=env()) for c in clones]
    barrier, errors = threading.Barrier(2), []

    def push(spec, clone):
        barrier.wait()
        try:
            jobs._push(spec, clone)
        except Exception as exc:  # noqa: BLE001
            errors.append(exc)

    threads = [threading.Thread(target=push, args=a) for a in zip(specs, clones)]
    [t.start() for t in threads]
    [t.join() for t in threads]
    assert not errors
    listed = dvc(user, "exp", "list", "--all-commits")
    assert "exp-a" in listed and "exp-b" in listed


def lttools(repo: Path, *args: str, check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run([sys.executable, "-m", "lttools.cli", *args], cwd=repo, env=env(),
                         capture_output=True, text=True, timeout=1800)
    assert not check or out.returncode == 0, (args, out.stdout, out.stderr)
    return out


def wait_done(repo: Path, seconds: float = 900) -> dict[str, str]:
    deadline = time.monotonic() + seconds
    while True:
        states = {j["key"]: j["state"] for j in
                  json.loads(lttools(repo, "sweep", "status", "--json", check=False).stdout)["jobs"]}
        if not any(s in ("pending", "running") for s in states.values()):
            return states
        assert time.monotonic() < deadline, states
        time.sleep(1)


def logs(repo: Path) -> str:
    return "".join(p.read_text() for p in (repo / ".lttools/jobs").glob("*/logs/*_log.out"))


def check_cache_whole(repo: Path) -> None:
    """Every object in the DVC cache is whole: its content hashes to its name."""
    objects = [p for p in (repo / ".dvc/cache/files/md5").glob("*/*") if p.is_file()]
    assert objects
    for p in objects:
        digest = hashlib.md5(p.read_bytes()).hexdigest()
        assert digest == p.parent.name + p.name.removesuffix(".dir"), p


@pytest.mark.slow
def test_a_sweep_on_the_local_executor_shares_its_backbone(tmp_path):
    """Two points of one backbone on submitit's local executor (one machine, no Slurm): the
    backbone is trained once, both experiments come back and compare."""
    repo = sweep_repo(tmp_path)
    out = lttools(repo, "sweep", "run", "--cluster", "local", "--name", "los", "--wait",
                  "-S", "methods.los.eps=0.9,0.98")
    assert "2 point(s) on 1 backbone(s)" in out.stdout
    assert set(wait_done(repo).values()) == {"done"}
    assert logs(repo).count("Running stage 'train_backbone@0'") == 1
    assert logs(repo).count("Stage 'train_backbone@0' is cached") == 2
    shown = dvc(repo, "exp", "show", "--md")
    assert "los-1" in shown and "los-2" in shown
    table = json.loads(lttools(repo, "compare", "los-1", "los-2", "--json").stdout)
    assert table["methods"]["ce"][1]["verdict"] == "no change"  # only los differs
    assert not list((repo / ".lttools/scratch").glob("*/*"))  # the clones are removed


def slurm_up() -> None:
    out = subprocess.run(["bash", str(ROOT / "tests/slurm/one_node.sh"), "start"],
                         capture_output=True, text=True)
    if out.returncode != 0:
        why = f"no one-node Slurm ({out.stderr.strip()}); `make test` installs it as root"
        if os.environ.get("CI") == "true":
            pytest.fail(why)  # in CI a skipped test would test nothing
        pytest.skip(why)


@pytest.fixture(scope="module")
def slurm():
    slurm_up()
    yield
    subprocess.run(["scancel", "--user", "root"], capture_output=True)


@pytest.mark.slow
def test_the_docs_sweep_runs_as_written_on_slurm(slurm, tmp_path):
    """docs/more-than-one-machine.md's 2 x 2 sweep on a real Slurm: 2 backbones trained once
    each (its points restore them from the run cache), 4 experiments pushed back, shown by
    `dvc exp show` and compared by `lttools compare`."""
    repo = sweep_repo(tmp_path)
    submit, status, show, compare = doc_recipe("more-than-one-machine.md", "slurm sweep")
    out = run_lines(repo, [submit])[0]
    assert "4 point(s) on 2 backbone(s), slurm" in out.stdout
    assert "| wd-1 | point |" in run_lines(repo, [status])[0].stdout
    states = wait_done(repo)
    assert set(states.values()) == {"done"}, (states, logs(repo)[-3000:])
    assert logs(repo).count("Running stage 'train_backbone@0'") == 2
    assert logs(repo).count("Stage 'train_backbone@0' is cached") == 4
    shown = run_lines(repo, [show])[0].stdout
    assert all(f"wd-{i}" in shown for i in range(1, 5))
    table = run_lines(repo, [compare])[0].stdout
    assert "backbone.weight_decay=0.0005" in table and "backbone.weight_decay=0.005" in table
    check_cache_whole(repo)


@pytest.mark.slow
def test_a_cancelled_job_is_reported_and_resubmitted_alone(slurm, tmp_path):
    repo = sweep_repo(tmp_path)
    lttools(repo, "sweep", "run", "--name", "long", "-S", "backbone.epochs=30",
            "-S", "methods.los.eps=0.9")
    sweep = load_sweep(repo)
    backbone = sweep.job("backbone-0")
    log = sweep.folder / "logs" / f"{backbone.job_id}_0_log.out"
    deadline = time.monotonic() + 300
    while "Running stage 'train_backbone@0'" not in (log.read_text() if log.exists() else ""):
        assert time.monotonic() < deadline, "stage 1 never started"
        time.sleep(0.5)
    time.sleep(1)  # mid stage 1 (30 epochs take several seconds even on a fast CPU)
    subprocess.run(["scancel", backbone.job_id], check=True)
    states = wait_done(repo)
    assert states == {"backbone-0": "cancelled", "long-1": "cancelled"}, states
    status = lttools(repo, "sweep", "status", check=False)
    assert status.returncode == 1 and str(Path(log)) in status.stdout  # its log, to read
    check_cache_whole(repo)  # nothing half-written reached the shared cache
    assert "re-submitted: backbone-0, long-1" in lttools(repo, "sweep", "run", "--retry",
                                                           "failed").stdout
    assert wait_done(repo) == {"backbone-0": "done", "long-1": "done"}
    assert "long-1" in dvc(repo, "exp", "list")
    check_cache_whole(repo)
