"""dvc.yaml stays true to the code: every lttools module a stage script imports (directly or
through other lttools modules, lazily too) is one of that stage's deps, so a commit that
changes a module re-runs the stages that use it. And dvc.lock belongs to the committed code:
no stage's recorded code deps or params differ from the files (missing outputs aside)."""
import ast
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]

# Modules that cannot change a result: error types and messages, atomic file writing, the
# stage scripts' argument and error handling, the version string.
CANNOT_CHANGE_RESULTS = {"lttools/__init__.py", "lttools/errors.py", "lttools/atomic.py",
                         "lttools/stage_cli.py"}


def module_file(name: str) -> Path | None:
    parts = name.split(".")
    for candidate in (ROOT.joinpath(*parts).with_suffix(".py"), ROOT.joinpath(*parts, "__init__.py")):
        if candidate.exists():
            return candidate
    return None


def imported_modules(path: Path) -> set[str]:
    """lttools modules named by any import in `path` (also inside functions); for
    `from a import b`, b too where it is a module."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{a.name}" for a in node.names}
    return {n for n in names if n.split(".")[0] == "lttools" and module_file(n)}


def closure(script: Path) -> set[str]:
    """Files (relative to the repository) of every lttools module `script` loads, with the
    packages that importing them runs."""
    todo, files = [script], set()
    while todo:
        for name in imported_modules(todo.pop()):
            parts = name.split(".")
            for i in range(1, len(parts) + 1):  # importing a.b.c runs a/__init__, a/b/__init__
                f = module_file(".".join(parts[:i]))
                rel = f.relative_to(ROOT).as_posix()
                if rel not in files:
                    files.add(rel)
                    todo.append(f)
    return files


# the root pipeline and the templates in examples/ (outside the DVC graph, copied to be run)
PIPELINES = [ROOT / "dvc.yaml", *sorted(ROOT.glob("examples/*/dvc.yaml"))]


def stages() -> dict[str, tuple[Path, dict]]:
    """Every stage of every dvc.yaml (foreach stages once, with the first item substituted),
    with the folder its paths are relative to."""
    out = {}
    for pipeline in PIPELINES:
        doc = yaml.safe_load(pipeline.read_text())
        prefix = "" if pipeline.parent == ROOT else pipeline.parent.relative_to(ROOT).as_posix() + ":"
        for name, st in doc["stages"].items():
            if "foreach" in st:
                st = json.loads(json.dumps(st["do"]).replace("${key}", "KEY"))
            out[prefix + name] = (pipeline.parent, st)
    return out


def repo_path(folder: Path, path: str) -> str:
    return os.path.relpath(os.path.normpath(folder / path), ROOT).replace(os.sep, "/")


def stage_script(folder: Path, cmd: str) -> Path:
    script = next(tok for tok in cmd.split() if "stages/" in tok and tok.endswith(".py"))
    return ROOT / repo_path(folder, script)


@pytest.mark.parametrize("name", sorted(stages()))
def test_every_imported_module_is_a_dependency(name):
    folder, st = stages()[name]
    deps = [repo_path(folder, d) for d in st.get("deps", []) if isinstance(d, str)]
    script = stage_script(folder, st["cmd"])
    assert script.relative_to(ROOT).as_posix() in deps, f"{name}: its script is not a dep"

    def covered(rel: str) -> bool:
        return any(rel == d or rel.startswith(d.rstrip("/") + "/") for d in deps)

    missing = sorted(f for f in closure(script) - CANNOT_CHANGE_RESULTS if not covered(f))
    assert not missing, (f"stage {name} imports {missing} but dvc.yaml does not list them as "
                         "deps: a change to them would leave stale results")


def test_the_closure_sees_lazy_and_package_imports(tmp_path):
    """The check itself: an import inside a function and the packages it runs are found."""
    script = tmp_path / "s.py"
    script.write_text("def f():\n    from lttools.retrain.registry import get_method\n")
    found = closure(script)
    assert {"lttools/retrain/registry.py", "lttools/retrain/__init__.py",
            "lttools/__init__.py"} <= found
    assert "lttools/retrain/methods.py" in found  # what the registry holds


def git_tracked() -> set[str]:
    out = subprocess.run(["git", "ls-files"], cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return set(out.stdout.splitlines())


@pytest.mark.parametrize("pipeline", [ROOT / "dvc.yaml"], ids=["dvc.yaml"])
def test_dvc_lock_matches_the_committed_code_and_params(pipeline):
    """`dvc status` of this checkout: a stage whose recorded code deps (files Git tracks) or
    params differ from the committed files means the metrics in Git came from other code.
    Deps that are data or outputs (not in Git: a fresh clone without a DVC remote lacks them)
    are not a difference in code."""
    env = dict(os.environ, DVC_NO_ANALYTICS="1")
    env["PATH"] = str(Path(sys.executable).parent) + os.pathsep + env["PATH"]
    out = subprocess.run([sys.executable, "-m", "dvc", "status", "--json", "dvc.yaml"],
                         cwd=pipeline.parent, env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    tracked = git_tracked()

    def is_code(path: str) -> bool:
        """Git tracks it, or files under it other than the .gitignore DVC writes beside its
        outputs (a folder of DVC outputs, such as metrics/predictions, is data: a fresh clone
        holds only that .gitignore, which is no difference in code)."""
        rel = repo_path(pipeline.parent, path)
        return rel in tracked or any(t.startswith(rel.rstrip("/") + "/")
                                     and Path(t).name != ".gitignore" for t in tracked)

    stale = {}
    for stage, items in json.loads(out.stdout or "{}").items():
        for item in items:
            if not isinstance(item, dict):
                stale.setdefault(stage, []).append(item)  # e.g. "changed command"
                continue
            for kind, changes in item.items():
                if kind == "changed outs":
                    continue
                if kind == "changed deps":
                    changes = {p: st for p, st in changes.items() if is_code(p)}
                if changes:
                    stale.setdefault(stage, []).append({kind: changes})
    assert not stale, ("dvc.lock is stale: run `dvc repro` and commit dvc.lock and metrics/ "
                       f"with the code: {stale}")


def test_lttools_modules_import_no_circle():
    """The folders read as the pipeline does: no module imports, directly or through others
    (lazily too), a module that imports it back (as registry.py and methods.py once did)."""
    files = sorted(p for p in (ROOT / "lttools").rglob("*.py"))
    graph = {}
    for f in files:
        rel = f.relative_to(ROOT).as_posix()
        graph[rel] = {module_file(n).relative_to(ROOT).as_posix() for n in imported_modules(f)}
        graph[rel] -= {rel, "lttools/__init__.py"}
    state: dict[str, int] = {}

    def visit(node: str, path: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, set())):
            if state.get(nxt) == 1:
                raise AssertionError("import circle: " + " -> ".join(path + [node, nxt]))
            if nxt not in state:
                visit(nxt, path + [node])
        state[node] = 2

    for node in graph:
        if node not in state:
            visit(node, [])
