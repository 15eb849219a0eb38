"""Submitting a sweep's jobs through submitit: one backbone job per backbone group, then the
group's points after it (`afterok` on Slurm; on the local executor each point waits for its
backbone job's report), and re-submitting the jobs that failed or were cancelled."""
from __future__ import annotations

import functools
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from lttools.errors import LTError
from lttools.sweep.grid import Point, backbone_overrides
from lttools.sweep.jobs import JobSpec, report_path, run_job
from lttools.sweep.record import Job, Sweep, new_sweep_id, sweep_folder
from lttools.sweep.settings import STATE_DIR, ClusterSettings


def _git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=repo, capture_output=True, text=True)
    if out.returncode != 0:
        raise LTError(f"git {' '.join(args)}: {out.stderr.strip()}")
    return out.stdout.strip()


def check_clean(repo: Path) -> str:
    """The commit every point will run from; a workspace with uncommitted changes to tracked
    files is refused (the jobs clone commits, and would silently run without the changes)."""
    dirty = _git(repo, "status", "--porcelain", "--untracked-files=no")
    if dirty:
        raise LTError("the workspace has uncommitted changes, which the sweep's jobs (clones of "
                      f"a commit) would not see:\n{dirty}\ncommit them (or `git stash`) first")
    return _git(repo, "rev-parse", "HEAD")


@functools.lru_cache(maxsize=None)
def shared_cache(repo: Path) -> str:
    """The repository's DVC cache folder, which every job of a sweep shares."""
    out = subprocess.run([sys.executable, "-m", "dvc", "cache", "dir"], cwd=repo,
                         capture_output=True, text=True)
    if out.returncode != 0:
        raise LTError(f"`dvc cache dir` failed in {repo}: {out.stderr.strip()}")
    return str(Path(out.stdout.strip()).resolve())


def executor(settings: ClusterSettings, folder: Path, kind: str, name: str,
             dependency: str = ""):
    import submitit

    res = settings.resources(kind)
    ex = submitit.AutoExecutor(folder=str(folder / "logs"), cluster=settings.cluster)
    params: dict[str, Any] = dict(timeout_min=res.time_min, cpus_per_task=res.cpus,
                                  mem_gb=res.mem_gb, gpus_per_node=res.gpus, name=name)
    if settings.cluster == "slurm":
        extra = dict(settings.slurm_parameters)
        if dependency:
            extra.update(dependency=f"afterok:{dependency}", kill_on_invalid_dep="yes")
        params.update(slurm_setup=list(settings.setup), slurm_additional_parameters=extra)
        if settings.partition:
            params["slurm_partition"] = settings.partition
    ex.update_parameters(**params)
    return ex


def job_spec(sweep: Sweep, job: Job, settings: ClusterSettings, links: list[str]) -> JobSpec:
    repo = Path(sweep.repo)
    folder = sweep.folder
    scratch = Path(settings.scratch or repo / STATE_DIR / "scratch") / sweep.sweep_id
    if settings.remote:
        source = _git(repo, "remote", "get-url", settings.remote)
        cache, push_to, linked = "", source, ()
    else:
        source, cache, push_to = str(repo), shared_cache(repo), str(repo)
        linked = tuple((str((repo / p).resolve()), p) for p in links if (repo / p).exists())
    wait_for, wait_seconds = "", 0.0
    if job.stage == "point" and settings.cluster != "slurm":
        wait_for = str(report_path(folder / "reports", f"backbone-{job.group}"))
        wait_seconds = 60.0 * settings.resources("backbone").time_min
    return JobSpec(key=job.key, stage=job.stage, source=source, rev=sweep.rev,
                   overrides=tuple(job.overrides), reports=str(folder / "reports"),
                   scratch=str(scratch), cache=cache, push_to=push_to, links=linked,
                   wait_for=wait_for, wait_seconds=wait_seconds)


def submit_job(sweep: Sweep, job: Job, settings: ClusterSettings, links: list[str],
               after: str = "") -> str:
    report = report_path(sweep.folder / "reports", job.key)
    report.unlink(missing_ok=True)  # a re-submission reports afresh
    ex = executor(settings, sweep.folder, job.stage, f"{sweep.sweep_id}:{job.key}", after)
    submitted = ex.submit(run_job, job_spec(sweep, job, settings, links))
    job.job_ids.append(str(submitted.job_id))
    if settings.cluster == "debug":  # runs in this process, on demand
        try:
            submitted.result()
        except Exception:  # noqa: BLE001 - its report says what failed
            pass
    return str(submitted.job_id)


def start_sweep(repo: Path, points: list[Point], settings: ClusterSettings, links: list[str],
                dvc_yaml: Path) -> Sweep:
    rev = check_clean(repo)
    sweep_id = new_sweep_id()
    jobs: list[Job] = []
    for group in sorted({p.group for p in points}):
        first = next(p for p in points if p.group == group)
        jobs.append(Job(f"backbone-{group}", "backbone",
                        overrides=backbone_overrides(first, dvc_yaml), group=group))
    jobs += [Job(p.name, "point", overrides=list(p.overrides), group=p.group) for p in points]
    sweep = Sweep(sweep_id, str(repo.resolve()), rev, settings.cluster, time.time(),
                  {k: v for k, v in vars(settings).items()}, jobs)
    sweep_folder(repo, sweep_id).mkdir(parents=True, exist_ok=True)
    sweep.save()  # recorded before anything is submitted: status finds even a partial sweep
    for job in jobs:
        after = sweep.backbone_of(job).job_id if job.stage == "point" else ""
        submit_job(sweep, job, settings, links, after)
        sweep.save()
    return sweep


def resubmit(sweep: Sweep, keys: list[str], settings: ClusterSettings,
             links: list[str]) -> list[str]:
    """Submit these jobs again (a point whose backbone job is also re-submitted runs after
    it); returns the keys submitted."""
    order = sorted(keys, key=lambda k: sweep.job(k).stage != "backbone")
    for key in order:
        job = sweep.job(key)
        after = ""
        if job.stage == "point" and settings.cluster == "slurm":
            backbone = sweep.backbone_of(job)
            after = backbone.job_id if backbone.key in keys else ""
        submit_job(sweep, job, settings, links, after)
        sweep.save()
    return order
