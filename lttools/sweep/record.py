"""A sweep's record in the repository (`.lttools/sweeps/<id>.json`): what was submitted, where
its jobs' logs are and what each job reported, so that `lttools sweep status` works after the
submitting shell is gone."""
from __future__ import annotations

import json
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from lttools.atomic import atomic_path
from lttools.errors import LTError
from lttools.sweep.settings import STATE_DIR


@dataclass
class Job:
    key: str  # "backbone-<group>" or the point's name
    stage: str  # "backbone" | "point"
    job_ids: list[str] = field(default_factory=list)  # every submission, the last one current
    overrides: list[str] = field(default_factory=list)
    group: int = 0

    @property
    def job_id(self) -> str:
        return self.job_ids[-1] if self.job_ids else ""


@dataclass
class Sweep:
    sweep_id: str
    repo: str  # the user's repository (where experiments come back)
    rev: str  # the commit every point runs from
    cluster: str
    created: float
    settings: dict[str, Any]
    jobs: list[Job]

    @property
    def folder(self) -> Path:
        return sweep_folder(Path(self.repo), self.sweep_id)

    def job(self, key: str) -> Job:
        return next(j for j in self.jobs if j.key == key)

    def points(self) -> list[Job]:
        return [j for j in self.jobs if j.stage == "point"]

    def backbone_of(self, point: Job) -> Job:
        return self.job(f"backbone-{point.group}")

    def save(self) -> Path:
        path = record_path(Path(self.repo), self.sweep_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        with atomic_path(path) as tmp:
            Path(tmp).write_text(json.dumps(asdict(self), indent=1))
        return path


def sweep_folder(repo: Path, sweep_id: str) -> Path:
    """Job logs and the jobs' own reports of one sweep."""
    return repo / STATE_DIR / "jobs" / sweep_id


def record_path(repo: Path, sweep_id: str) -> Path:
    return repo / STATE_DIR / "sweeps" / f"{sweep_id}.json"


def new_sweep_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + f"-{time.time_ns() % 1000:03d}"


def load_sweep(repo: Path, sweep_id: str | None = None) -> Sweep:
    """The sweep with that id, or the latest one."""
    folder = repo / STATE_DIR / "sweeps"
    records = sorted(folder.glob("*.json")) if folder.exists() else []
    if not records:
        raise LTError(f"no sweep recorded in {folder}; start one with `lttools sweep run -S ...`")
    if sweep_id is None:
        path = records[-1]
    else:
        path = record_path(repo, sweep_id)
        if not path.exists():
            raise LTError(f"no sweep {sweep_id!r}; recorded: "
                          f"{', '.join(p.stem for p in records)}")
    data = json.loads(path.read_text())
    data["jobs"] = [Job(**j) for j in data["jobs"]]
    return Sweep(**data)
