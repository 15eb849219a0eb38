"""Throw-away lttools repositories for end-to-end DVC tests: the pipeline files copied into a
fresh git + DVC repository, params shrunk to run in seconds, and helpers to call dvc and git
there."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parents[1]
PIPELINE_FILES = ("dvc.yaml", "params.yaml", ".dvcignore", ".gitignore", "stages", "lttools",
                  ".dvc/config", "models/.gitignore", "models/pretrained/.gitkeep",
                  "data/lists/.gitkeep")
IMPORTED = ("examples/imported/dvc.yaml", "examples/imported/params.yaml",
            "examples/imported/.gitignore")
GIT_ENV = {"GIT_AUTHOR_NAME": "t", "GIT_AUTHOR_EMAIL": "t@example.invalid",
           "GIT_COMMITTER_NAME": "t", "GIT_COMMITTER_EMAIL": "t@example.invalid"}
FAST = {"replicates": {"seeds": [0]},  # one backbone; tests of replicates name two
        "backbone": {"epochs": 2, "batch_size": 32, "device": "cpu"},
        "features": {"views": 1, "batch_size": 128, "device": "cpu"},
        "retrain": {"seeds": [0, 1], "views": 1, "epochs": 3, "device": "cpu"}}


def env() -> dict[str, str]:
    # no fallback to a system-wide Fashion-MNIST: a test repository sees only its own data
    e = dict(os.environ, DVC_NO_ANALYTICS="1", PYTHONPATH=str(ROOT), **GIT_ENV,
             LTTOOLS_SYSTEM_FASHION_MNIST="/nonexistent")
    e["PATH"] = str(Path(sys.executable).parent) + os.pathsep + e["PATH"]
    return e


def dvc(repo: Path, *args: str) -> str:
    out = subprocess.run([sys.executable, "-m", "dvc", *args], cwd=repo, env=env(),
                         capture_output=True, text=True)
    assert out.returncode == 0, f"dvc {' '.join(args)} failed:\n{out.stdout}\n{out.stderr}"
    return out.stdout


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(["git", *args], cwd=repo, env=env(), capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout


def merge(params: dict, changes: dict) -> dict:
    for key, value in changes.items():
        if isinstance(value, dict) and isinstance(params.get(key), dict):
            merge(params[key], value)
        else:
            params[key] = value
    return params


def set_param(repo: Path, dotted: str, value: Any) -> None:
    params = yaml.safe_load((repo / "params.yaml").read_text())
    node = params
    *path, last = dotted.split(".")
    for part in path:
        node = node[part]
    node[last] = value
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def make_repo(repo: Path, changes: dict, methods: list[str] | None = None,
              commit: bool = True, imported: bool = False) -> Path:
    """The pipeline in `repo` with FAST params, then `changes` (nested dicts), and only the
    listed methods (all when None); with `imported`, the imported-features example too; a
    first commit (dvclive needs one)."""
    repo.mkdir(parents=True, exist_ok=True)
    for item in PIPELINE_FILES + (IMPORTED if imported else ()):
        src, dst = ROOT / item, repo / item
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dst)
    shrink_params(repo, changes, methods)
    git(repo, "init", "-q")
    if commit:
        git(repo, "add", "-A")
        git(repo, "commit", "-qm", "lttools")
    return repo


def shrink_params(repo: Path, changes: dict, methods: list[str] | None = None) -> None:
    """FAST params, then `changes` (nested dicts), and only the listed methods (all when None)."""
    params = merge(merge(yaml.safe_load((repo / "params.yaml").read_text()), FAST), changes)
    if methods is not None:
        params["methods"] = {k: v for k, v in params["methods"].items() if k in methods}
    (repo / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))


def fresh_clone(dest: Path, changes: dict, methods: list[str] | None = None) -> Path:
    """`git clone` of this project's committed HEAD, exactly what a user gets (every file Git
    holds: examples, presets, the committed dvc.lock and metrics), with shrunk params."""
    out = subprocess.run(["git", "clone", "-q", str(ROOT), str(dest)], env=env(),
                         capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    shrink_params(dest, changes, methods)
    return dest


def check_metric_values(name: str, metrics: dict[str, Any]) -> None:
    """Every metric a stage writes is a finite number within its range."""
    import math

    for key, value in metrics.items():
        assert isinstance(value, (int, float)) and not isinstance(value, bool), (name, key)
        assert math.isfinite(value), (name, key, value)
        base = key.removesuffix("_mean").removesuffix("_std")
        if key.endswith("_std"):
            assert value >= 0, (name, key, value)
        if any(base.endswith(m) for m in ("acc", "bacc", "many", "medium", "few", "ece")) \
                and not key.endswith("_std"):
            assert 0 <= value <= 100, (name, key, value)
        if base.startswith("selected_epoch"):
            assert 0 <= value <= metrics.get("epochs", value), (name, key, value)


DOCS = ROOT / "docs"


def doc_recipe(page: str, name: str) -> list[str]:
    """The non-blank lines of the bash block after `<!-- recipe: NAME -->` in docs/PAGE, as a
    user would paste them (comments kept: bash ignores them)."""
    import re

    text = (DOCS / page).read_text()
    match = re.search(rf"<!-- recipe: {re.escape(name)} -->\n```bash\n(.*?)```", text, re.S)
    assert match, f"docs/{page} has no recipe {name!r}"
    return [line for line in match[1].splitlines() if line.strip()]


def run_lines(repo: Path, lines: list[str], timeout: int = 1800,
              extra_env: dict[str, str] | None = None) -> list[subprocess.CompletedProcess]:
    """Each line in bash in `repo`, as written; every one must succeed."""
    done = []
    for line in lines:
        out = subprocess.run(["bash", "-c", line], cwd=repo, env={**env(), **(extra_env or {})},
                             capture_output=True, text=True, timeout=timeout)
        assert out.returncode == 0, (line, out.stdout, out.stderr)
        done.append(out)
    return done


SWEEP_CLUSTER = {"backbone": {"gpus": 0, "cpus": 1, "mem_gb": 1, "time_min": 30},
                 "point": {"gpus": 0, "cpus": 1, "mem_gb": 1, "time_min": 30}}


def sweep_repo(where: Path, backbone_epochs: int = 1) -> Path:
    """A committed pipeline on a tiny Fashion-MNIST-LT (stage-2 methods ce and los), with
    `.lttools/cluster.yaml` asking one CPU per job (git-ignored, as the record and logs)."""
    from fixtures import make_fashion_mnist

    repo = where / "repo"
    make_fashion_mnist(repo / "data" / "raw", per_class=60, test_per_class=10)
    make_repo(repo, {"data": {"root": "data/raw", "imb_ratio": 10, "max_per_class": 40,
                              "val_per_class": 10}, "backbone": {"epochs": backbone_epochs}},
              methods=["ce", "los"])
    (repo / ".lttools").mkdir()
    (repo / ".lttools/cluster.yaml").write_text(yaml.safe_dump(SWEEP_CLUSTER))
    assert not git(repo, "status", "--porcelain")  # the settings are git-ignored
    return repo
