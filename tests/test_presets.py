"""Every params file the project ships (the default, the imported-features example's, the
benchmark presets) is valid: each section type-checks, each method's entry makes a plan."""
import shutil
from pathlib import Path

import pytest
import yaml

from lttools.backbone.config import BackboneConfig
from lttools.config import from_section
from lttools.data.images import PRESETS
from lttools.data.prepared import DataConfig
from lttools.features.extract import ExtractConfig
from lttools.features.arrays import ImportConfig
from lttools.retrain.plan import make_plan
from pipeline_helpers import dvc, make_repo

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "params.yaml", ROOT / "examples/imported/params.yaml",
         *sorted((ROOT / "presets").glob("*.yaml"))]
SECTIONS = {"data": DataConfig, "backbone": BackboneConfig, "features": ExtractConfig,
            "import": ImportConfig}


@pytest.mark.parametrize("path", FILES, ids=lambda p: p.relative_to(ROOT).as_posix())
def test_params_file_is_valid(path):
    params = yaml.safe_load(path.read_text())
    for name, cls in SECTIONS.items():
        if name in params:
            from_section(cls, params[name], name)
    for key, entry in params["methods"].items():
        plan = make_plan(key, entry, params["retrain"])
        if params.get("data", {}).get("val_per_class", 1) == 0 and "val_list" not in \
                params.get("data", {}) and params["data"].get("preset") in ("inat2018",):
            assert len(plan.grid) == 1, f"{path.name}: {key} has a grid but no validation split"


def test_there_is_a_preset_for_every_benchmark():
    assert {p.stem for p in (ROOT / "presets").glob("*.yaml")} == set(PRESETS)
    for name in PRESETS:
        assert yaml.safe_load((ROOT / f"presets/{name}.yaml").read_text())["data"]["preset"] == name


def stage_check(repo: Path) -> list[str]:
    """What DVC refuses before or while it runs a stage: a param the stage lists that the
    params file lacks, a dep that is neither in the repository nor an output of a stage."""
    from dvc.dependency.param import ParamsDependency
    from dvc.repo import Repo

    problems = []
    with Repo(str(repo)) as dvc_repo:
        stages = list(dvc_repo.index.stages)
        outs = {o.fs_path for st in stages for o in st.outs}
        for st in stages:
            for dep in st.deps:
                if isinstance(dep, ParamsDependency):
                    missing = set(dep.params) - set(dep.read_params())
                    if missing:
                        problems.append(f"{st.name}: params {sorted(missing)} missing")
                elif not Path(dep.fs_path).exists() and not any(
                        dep.fs_path == o or dep.fs_path.startswith(o + "/")
                        or o.startswith(dep.fs_path + "/") for o in outs):
                    problems.append(f"{st.name}: dep {dep.def_path} is missing")
    return problems


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(PRESETS))
def test_a_preset_copied_to_params_yaml_passes_dvcs_own_checks(name, tmp_path):
    """docs/own-data.md's recipe: `cp presets/<name>.yaml params.yaml`, then `dvc repro`. Every stage's
    params and deps must be there before stage 1 runs: a param a stage lists but the preset
    lacks would stop the pipeline at that stage, after hours of stage 1. DVC's dry run checks
    the first stage; the rest are checked as DVC checks them, through its own API."""
    repo = make_repo(tmp_path / "repo", {})
    shutil.copy(ROOT / f"presets/{name}.yaml", repo / "params.yaml")
    assert "Running stage 'prepare_data'" in dvc(repo, "repro", "--dry", "prepare_data")
    methods = yaml.safe_load((repo / "params.yaml").read_text())["methods"]
    assert len(methods) == 16
    assert stage_check(repo) == []


def test_the_stage_check_finds_a_missing_param(tmp_path):
    repo = make_repo(tmp_path / "repo", {})
    params = yaml.safe_load((repo / "params.yaml").read_text())
    del params["data"]["imb_ratio"]
    (repo / "params.yaml").write_text(yaml.safe_dump(params))
    problems = stage_check(repo)
    assert "prepare_data" not in " ".join(problems)  # it reads `data` whole
    assert "retrain@ce: params ['data.imb_ratio'] missing" in problems
