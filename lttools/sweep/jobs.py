"""What one job of a sweep does on its node: clone the repository at the sweep's revision into
scratch, point DVC at the shared cache, run (a backbone job: the expensive stages, which fill
the shared cache and its run cache; a point job: `dvc exp run -n NAME -S ...`, which restores
those stages from the run cache), push the experiment back, remove the clone. Each job writes
its own report (done or failed, with seconds per step) beside the sweep's logs."""
from __future__ import annotations

import json
import os
import random
import shutil
import socket
import subprocess
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from lttools.atomic import atomic_path
from lttools.errors import LTError
from lttools.sweep.grid import LAST_EXPENSIVE

PUSH_TRIES = 6


class Stopped(LTError):
    """A command of the job was killed by a signal (scancel, a time limit)."""


@dataclass(frozen=True)
class JobSpec:
    key: str  # backbone-<group> or the point's (experiment's) name
    stage: str  # backbone | point
    source: str  # what to clone: the user's repository (a path), or a Git remote's URL
    rev: str
    overrides: tuple[str, ...]
    reports: str  # folder of the jobs' reports
    scratch: str  # folder of the clones
    cache: str = ""  # the shared DVC cache ("": the clone's own, outputs go through the remote)
    push_to: str = ""  # where the experiment goes: the user's repository, or a Git remote's URL
    links: tuple[tuple[str, str], ...] = ()  # (absolute source, path in the clone): raw data
    wait_for: str = ""  # local executors: the backbone job's report to wait for (no afterok)
    wait_seconds: float = 0.0
    env: dict[str, str] = field(default_factory=dict)


def report_path(reports: str | Path, key: str) -> Path:
    return Path(reports) / f"{key}.json"


def read_report(reports: str | Path, key: str) -> dict | None:
    path = report_path(reports, key)
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return None


def _write_report(spec: JobSpec, report: dict) -> None:
    path = report_path(spec.reports, spec.key)
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        Path(tmp).write_text(json.dumps(report, indent=1))


def _job_id() -> str:
    try:
        import submitit

        return str(submitit.JobEnvironment().job_id)
    except RuntimeError:  # not inside a submitit job (a direct call)
        return str(os.getpid())


def run_job(spec: JobSpec) -> dict:
    """The job's work, with its report written whatever happens (a job killed outright leaves
    none: `lttools sweep status` then asks the scheduler)."""
    report = {"key": spec.key, "stage": spec.stage, "job_id": _job_id(),
              "host": socket.gethostname(), "seconds": {}, "state": "running"}
    started = time.perf_counter()

    @contextmanager
    def step(name: str) -> Iterator[None]:
        t0 = time.perf_counter()
        yield
        report["seconds"][name] = round(time.perf_counter() - t0, 3)

    try:
        if spec.wait_for:
            with step("wait"):
                _wait_for(spec.wait_for, spec.wait_seconds)
        work = Path(spec.scratch) / spec.key
        with step("clone"):
            _clone(spec, work)
        with step("setup"):
            _setup(spec, work)
        with step("run"):
            _run(spec, work)
        if spec.stage == "point":
            with step("push"):
                _push(spec, work)
        with step("cleanup"):
            shutil.rmtree(work, ignore_errors=True)
        report["state"] = "done"
        return report
    except BaseException as exc:
        report["state"] = "cancelled" if isinstance(exc, Stopped) else "failed"
        report["error"] = f"{type(exc).__name__}: {exc}"[-4000:]
        raise
    finally:
        report["seconds"]["total"] = round(time.perf_counter() - started, 3)
        _write_report(spec, report)


def _env(spec: JobSpec) -> dict[str, str]:
    env = {**os.environ, "DVC_NO_ANALYTICS": "1", **spec.env}
    # the stages' `python` is this job's interpreter (a virtual environment not activated)
    env["PATH"] = os.pathsep.join([str(Path(sys.executable).parent), env.get("PATH", "")])
    env.pop("PYTHONPATH", None)  # each clone's stage scripts import the clone's lttools
    return env


def _sh(spec: JobSpec, args: list[str], cwd: Path) -> None:
    print("+", " ".join(args), flush=True)
    out = subprocess.run(args, cwd=cwd, env=_env(spec))
    if out.returncode < 0:
        raise Stopped(f"`{' '.join(args)}` was stopped by signal {-out.returncode}")
    if out.returncode != 0:
        raise LTError(f"`{' '.join(args)}` failed (exit {out.returncode}) in {cwd}")


def _dvc(spec: JobSpec, work: Path, *args: str) -> None:
    _sh(spec, [sys.executable, "-m", "dvc", *args], work)


def _clone(spec: JobSpec, work: Path) -> None:
    shutil.rmtree(work, ignore_errors=True)  # a retried job starts afresh
    work.parent.mkdir(parents=True, exist_ok=True)
    _sh(spec, ["git", "clone", "--quiet", spec.source, str(work)], work.parent)
    _sh(spec, ["git", "checkout", "--quiet", spec.rev], work)


def _setup(spec: JobSpec, work: Path) -> None:
    if spec.cache:
        _dvc(spec, work, "cache", "dir", "--local", spec.cache)
        _dvc(spec, work, "config", "--local", "cache.shared", "group")
    for source, rel in spec.links:
        dest = work / rel
        dest.parent.mkdir(parents=True, exist_ok=True)
        if not dest.exists():
            os.symlink(source, dest)


def _run(spec: JobSpec, work: Path) -> None:
    if spec.stage == "backbone":
        from dvc.utils.hydra import apply_overrides

        if spec.overrides:
            apply_overrides(work / "params.yaml", list(spec.overrides))
        # no pull from a remote without a shared cache: the remote has only what was pushed
        _dvc(spec, work, "repro", LAST_EXPENSIVE)
        if not spec.cache:
            _dvc(spec, work, "push", "--run-cache", LAST_EXPENSIVE)
        return
    pull = [] if spec.cache else ["--pull", "--allow-missing"]
    sets = [a for o in spec.overrides for a in ("-S", o)]
    _dvc(spec, work, "exp", "run", *pull, "-n", spec.key, *sets)


def _push(spec: JobSpec, work: Path) -> None:
    """`dvc exp push`, retried: points that finish together push to one repository at once,
    and Git's ref locks make one of them wait its turn."""
    args = ["exp", "push", *(["--no-cache"] if spec.cache else []), spec.push_to, spec.key]
    for attempt in range(PUSH_TRIES):
        try:
            _dvc(spec, work, *args)
            return
        except Stopped:
            raise
        except LTError:
            if attempt == PUSH_TRIES - 1:
                raise
            time.sleep(random.uniform(0.5, 2.0) * 2 ** attempt)


def _wait_for(report_file: str, seconds: float) -> None:
    """Local executors have no job dependencies: wait for the backbone job's report."""
    path = Path(report_file)
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            state = json.loads(path.read_text())["state"]
        except (OSError, ValueError, KeyError):
            state = None
        if state == "done":
            return
        if state == "failed":
            raise LTError(f"its backbone job failed ({path})")
        time.sleep(0.5)
    raise LTError(f"its backbone job did not finish within {seconds:.0f} s ({path})")
