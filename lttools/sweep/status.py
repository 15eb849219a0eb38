"""Where each job of a recorded sweep stands: its own report when it wrote one (done, failed,
cancelled), else what the scheduler says (pending, running), else cancelled (killed before it
could report: scancel, a node lost, a time limit)."""
from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass

from lttools.sweep.jobs import read_report
from lttools.sweep.record import Job, Sweep

FINISHED_BADLY = ("failed", "cancelled")


@dataclass
class JobState:
    key: str
    stage: str
    job_id: str
    state: str  # pending | running | done | failed | cancelled
    log: str
    error: str = ""
    seconds: dict | None = None


def _slurm_states(job_ids: list[str]) -> dict[str, str]:
    if not job_ids:
        return {}
    out = subprocess.run(["squeue", "-h", "-j", ",".join(job_ids), "-o", "%i %T"],
                         capture_output=True, text=True)
    states = {}
    for line in out.stdout.splitlines():
        job_id, _, state = line.strip().partition(" ")
        states[job_id] = state.lower()
    return states


def _alive(pid: str) -> bool:
    """A local job's process runs (a zombie, finished but not yet reaped, does not)."""
    try:
        os.kill(int(pid), 0)
        stat = open(f"/proc/{int(pid)}/stat").read()
    except (OSError, ValueError):
        return False
    return stat.rsplit(")", 1)[-1].split()[0] != "Z"


def log_path(sweep: Sweep, job: Job) -> str:
    return str(sweep.folder / "logs" / f"{job.job_id}_0_log.out")


def job_states(sweep: Sweep) -> list[JobState]:
    queued = _slurm_states([j.job_id for j in sweep.jobs]) if sweep.cluster == "slurm" else {}
    states = []
    for job in sweep.jobs:
        report = read_report(sweep.folder / "reports", job.key)
        if report is not None:
            state = report["state"]
        elif sweep.cluster == "slurm":
            state = {"pending": "pending", "configuring": "pending", "running": "running",
                     "completing": "running"}.get(queued.get(job.job_id, ""), "cancelled")
        else:
            state = "running" if _alive(job.job_id) else "cancelled"
        states.append(JobState(job.key, job.stage, job.job_id, state, log_path(sweep, job),
                               (report or {}).get("error", ""), (report or {}).get("seconds")))
    return states


def to_retry(sweep: Sweep, states: list[JobState]) -> list[str]:
    """The jobs to submit again: every point that failed or was cancelled, and its backbone
    job unless that one is done."""
    by_key = {s.key: s for s in states}
    keys: list[str] = []
    for s in states:
        if s.stage == "point" and s.state in FINISHED_BADLY:
            backbone = sweep.backbone_of(sweep.job(s.key))
            if by_key[backbone.key].state != "done" and backbone.key not in keys:
                keys.append(backbone.key)
            keys.append(s.key)
    return keys


def cancel(sweep: Sweep, states: list[JobState]) -> list[str]:
    """Cancel every job not finished yet; returns their keys."""
    open_jobs = [s for s in states if s.state in ("pending", "running")]
    if sweep.cluster == "slurm" and open_jobs:
        subprocess.run(["scancel", *[s.job_id for s in open_jobs]], check=False)
    elif sweep.cluster == "local":
        for s in open_jobs:
            try:
                os.killpg(int(s.job_id), signal.SIGTERM)
            except (OSError, ValueError):
                try:
                    os.kill(int(s.job_id), signal.SIGTERM)
                except (OSError, ValueError):
                    pass
    return [s.key for s in open_jobs]


def table(states: list[JobState]) -> str:
    rows = ["| job | stage | id | state | log |", "|---|---|---|---|---|"]
    for s in states:
        note = f" ({s.error})" if s.error and s.state in FINISHED_BADLY else ""
        rows.append(f"| {s.key} | {s.stage} | {s.job_id} | {s.state}{note} | {s.log} |")
    return "\n".join(rows)
