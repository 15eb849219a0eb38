"""Read one revision's results through DVC's Python API: its params, each method's metrics
(from Git) and test predictions (from the DVC cache, or the remote when they are only there),
and the stage-1 head's metrics. A revision is anything Git or DVC names: a commit, a branch, a
tag, a DVC experiment, or `workspace`."""
from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from lttools.errors import LTError
from lttools.predictions import Predictions, load_predictions
from lttools.results import ResultPaths

WORKSPACE = "workspace"
BACKBONE_METRICS = "metrics/backbone/{seed}/metrics.json"  # each replicate's stage-1 results
OLD_BACKBONE_METRICS = "metrics/backbone/metrics.json"  # before replicates


@dataclass
class MethodAt:
    metrics: dict[str, Any]
    predictions: Predictions | None
    problem: str | None = None  # why there are no predictions


@dataclass
class Revision:
    name: str  # as the user gave it
    sha: str | None  # None: the workspace
    subject: str  # the commit's subject line ("uncommitted changes" for the workspace)
    params: dict[str, Any]
    methods: dict[str, MethodAt] = field(default_factory=dict)
    backbone: dict[str, Any] = field(default_factory=dict)  # stage-1 head's test metrics

    @property
    def short(self) -> str:
        return self.name if self.sha is None or self.name.startswith(self.sha[:7]) else \
            f"{self.name} ({self.sha[:7]})"


def resolve(root: Path, rev: str) -> tuple[str | None, str]:
    """The commit a revision names (None for the workspace) and its subject line."""
    from dvc.exceptions import DvcException
    from dvc.scm import SCM, resolve_rev

    if rev == WORKSPACE:
        return None, "uncommitted changes"
    try:
        scm = SCM(str(root))
        sha = resolve_rev(scm, rev)
        return sha, scm.resolve_commit(sha).message.strip().splitlines()[0]
    except DvcException as exc:
        raise LTError(f"no revision named {rev!r} in {root} (not a commit, branch, tag or DVC "
                      "experiment; `git log --oneline`, `dvc exp list` list them; "
                      f"`{WORKSPACE}` is the working tree)") from exc


def read_revision(root: str | Path, rev: str, metrics_root: str = "metrics") -> Revision:
    from dvc.api import DVCFileSystem

    root = Path(root).resolve()
    sha, subject = resolve(root, rev)
    fs = DVCFileSystem(str(root), rev=sha)
    try:
        params = _yaml(fs, "params.yaml", rev)
        out = Revision(rev, sha, subject, params)
        paths = ResultPaths(Path(metrics_root))
        for key in params.get("methods") or {}:
            metrics = _json(fs, paths.metrics(key).as_posix())
            if metrics is None:
                continue
            out.methods[key] = _method(fs, paths.predictions(key).as_posix(), metrics, rev, key)
        out.backbone = _stage1(fs, params)

        return out
    finally:
        fs.close()


def _stage1(fs, params: dict) -> dict[str, Any]:
    """The stage-1 heads' test results, averaged over the backbone replicates."""
    seeds = (params.get("replicates") or {}).get("seeds") or []
    found = [_json(fs, BACKBONE_METRICS.format(seed=s)) for s in seeds] or \
        [_json(fs, OLD_BACKBONE_METRICS)]
    found = [f for f in found if isinstance(f, dict)]
    keys = [k for k in (found[0] if found else {}) if all(
        isinstance(f.get(k), (int, float)) for f in found)]
    return {k: float(np.mean([f[k] for f in found])) for k in keys}


def _method(fs, path: str, metrics: dict, rev: str, key: str) -> MethodAt:
    where = f"{path} at {rev}"
    try:
        data = fs.read_bytes(path)
    except FileNotFoundError:
        return MethodAt(metrics, None, f"no {path} at {rev} (results from before predictions "
                                       "were kept, or not pushed to the DVC remote)")
    except Exception as exc:  # DVC's errors when neither the cache nor a remote has it
        return MethodAt(metrics, None, f"{where} is in neither the DVC cache nor a remote "
                                       f"({type(exc).__name__}: {exc}); `dvc pull` or "
                                       f"`dvc repro retrain@{key}` at that revision")
    try:
        return MethodAt(metrics, load_predictions(io.BytesIO(data), where))
    except LTError as exc:
        return MethodAt(metrics, None, str(exc))


def _read(fs, path: str) -> str | None:
    try:
        return fs.read_text(path)
    except FileNotFoundError:
        return None


def _json(fs, path: str) -> Any:
    text = _read(fs, path)
    try:
        return None if text is None else json.loads(text)
    except json.JSONDecodeError:
        return None


def _yaml(fs, path: str, rev: str) -> dict[str, Any]:
    text = _read(fs, path)
    if text is None:
        raise LTError(f"{rev} has no {path}: not an lttools pipeline at that revision")
    return yaml.safe_load(text) or {}


def flat(params: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """Nested params as dotted keys."""
    out = {}
    for k, v in params.items():
        if isinstance(v, dict):
            out.update(flat(v, f"{prefix}{k}."))
        else:
            out[f"{prefix}{k}"] = v
    return out


def labels(revisions: list[Revision], limit: int = 3) -> list[str]:
    """Each revision's column label: the params that differ between the revisions (up to
    `limit`), else the commit's subject."""
    flats = [flat(r.params) for r in revisions]
    keys = sorted({k for f in flats for k in f})
    differ = [k for k in keys if len({json.dumps(f.get(k), sort_keys=True) for f in flats}) > 1]
    out = []
    for r, f in zip(revisions, flats):
        shown = [f"{k}={f[k]}" if k in f else f"{k} unset" for k in differ[:limit]]
        more = f" (+{len(differ) - limit} more)" if len(differ) > limit else ""
        subject = r.subject if len(r.subject) <= 60 else r.subject[:57] + "..."
        out.append(", ".join(shown) + more if shown else subject)
    return out
