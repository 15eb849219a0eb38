"""Cluster settings: an untracked `.lttools/cluster.yaml` (never params.yaml: a partition or a
time limit must not invalidate a DVC stage), overridden by command-line flags."""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from lttools.config import from_section
from lttools.errors import LTError, check_range
from lttools.stage_cli import read_mapping

CLUSTERS = ("slurm", "local", "debug")
SETTINGS_FILE = ".lttools/cluster.yaml"
STATE_DIR = ".lttools"  # sweep records, job logs and (by default) the scratch clones; git-ignored


@dataclass(frozen=True)
class Resources:
    """What one job asks for."""
    gpus: int = 0
    cpus: int = 1
    mem_gb: float = 4.0
    time_min: int = 60

    def check(self, where: str) -> None:
        check_range(f"{where}.gpus", self.gpus, low=0)
        check_range(f"{where}.cpus", self.cpus, low=1)
        check_range(f"{where}.mem_gb", self.mem_gb, low=0, low_inclusive=False)
        check_range(f"{where}.time_min", self.time_min, low=1)


@dataclass(frozen=True)
class ClusterSettings:
    cluster: str = "slurm"  # slurm | local (one job per process on this machine) | debug (in-process)
    partition: str = ""
    setup: list[str] = field(default_factory=list)  # shell lines before each job (module load, venv)
    scratch: str = ""  # where the jobs clone the repository ("": .lttools/scratch, shared FS)
    backbone: dict = field(default_factory=lambda: {"gpus": 1, "cpus": 4,
                                                              "mem_gb": 16, "time_min": 240})
    point: dict = field(default_factory=lambda: {"gpus": 0, "cpus": 2,
                                                           "mem_gb": 8, "time_min": 60})
    slurm_parameters: dict = field(default_factory=dict)  # e.g. {account: ..., qos: ...}
    remote: str = ""  # "": push back to this repository (shared FS); else a Git remote's name

    def validate(self) -> None:
        if self.cluster not in CLUSTERS:
            raise LTError(f"cluster = {self.cluster!r}: choose one of {', '.join(CLUSTERS)}")
        self.resources("backbone")
        self.resources("point")

    def resources(self, kind: str) -> Resources:
        values = getattr(self, kind)
        res = from_section(Resources, dict(values), f"{SETTINGS_FILE}: {kind}")
        res.check(kind)
        return res


def load_settings(repo: Path, overrides: dict[str, Any]) -> ClusterSettings:
    """`.lttools/cluster.yaml` under `repo` (if there), then the flags that were given."""
    path = repo / SETTINGS_FILE
    values = read_mapping(path, "settings (cluster, partition, setup, ...)") if path.exists() else {}
    values.update({k: v for k, v in overrides.items() if v not in (None, [], "")})
    settings = from_section(ClusterSettings, values, SETTINGS_FILE)
    return dataclasses.replace(settings, setup=list(settings.setup))
