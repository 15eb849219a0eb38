"""docs/add-a-method.md, followed as written in a scratch copy of the project: its
code blocks appended where their first lines say, its commands run; the new method then has
its formula test, its DVC stage, its leaderboard row and its `lttools methods` entry."""
import json
import re
import shutil
import subprocess
import sys

import pytest
import yaml

from fixtures import make_fashion_mnist
from pipeline_helpers import DOCS, ROOT, env, make_repo

pytestmark = pytest.mark.slow


def readme_blocks() -> list[tuple[str, str]]:
    section = (DOCS / "add-a-method.md").read_text()
    section = section[section.index("## One `Method`"):]
    return re.findall(r"```(\w+)\n(.*?)```", section, re.S)


def test_the_add_your_own_method_section_works_as_written(tmp_path):
    repo = tmp_path / "repo"
    make_fashion_mnist(repo / "data" / "raw", per_class=60, test_per_class=10)
    make_repo(repo, {"data": {"root": "data/raw", "imb_ratio": 10, "max_per_class": 40,
                              "val_per_class": 10}, "backbone": {"epochs": 1}}, methods=["ce"],
              commit=False)
    for folder in ("tests", "presets"):  # what a clone has besides the pipeline
        shutil.copytree(ROOT / folder, repo / folder,
                        ignore=shutil.ignore_patterns("__pycache__"))
    blocks = readme_blocks()
    assert [lang for lang, _ in blocks] == ["python", "python", "yaml", "bash"]
    for lang, code in blocks[:3]:  # "# <file>, at the end" / "# params.yaml, under methods:"
        first, rest = code.split("\n", 1)
        target = repo / re.match(r"# (\S+?),", first)[1]
        assert target.exists(), first
        with target.open("a") as f:
            f.write("\n" + rest)
    params = yaml.safe_load((repo / "params.yaml").read_text())
    assert list(params["methods"]) == ["ce", "poly1"]  # pasted under methods:, the last section

    e = dict(env(), PYTHONPATH=str(repo))  # the scratch copy's lttools, not this checkout's
    subprocess.run(["git", "add", "-A"], cwd=repo, env=e, check=True)
    subprocess.run(["git", "commit", "-qm", "poly1"], cwd=repo, env=e, check=True)
    outputs = []
    for line in blocks[3][1].splitlines():
        command = line.split("#")[0].split()
        if command[0] == "python":
            command[0] = sys.executable
        elif command[0] in ("dvc", "lttools"):  # this environment's, on the scratch copy
            command = [sys.executable, "-m", "dvc" if command[0] == "dvc" else "lttools.cli",
                       *command[1:]]
        out = subprocess.run(command, cwd=repo, env=e, capture_output=True, text=True)
        assert out.returncode == 0, f"{line}\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}"
        outputs.append(out.stdout)
    tests_out, repro_out, methods_out = outputs
    assert "failed" not in tests_out and " passed" in tests_out
    assert "Running stage 'retrain@poly1'" in repro_out and "Running stage 'report'" in repro_out
    assert "poly1  (prior-free)" in methods_out and "epsilon" in methods_out
    metrics = json.loads((repo / "metrics/methods/poly1.json").read_text())
    assert metrics["num_heads"] == 3 * len(params["retrain"]["seeds"])  # the grid x seeds
    assert 0 < metrics["test_bacc_mean"] <= 100
    assert "| poly1 |" in (repo / "metrics/leaderboard.md").read_text()
