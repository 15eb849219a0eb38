"""Every params file the project ships (the default, the imported-features pipeline's, the
benchmark presets) is valid: each section type-checks, each method's entry makes a plan."""
from pathlib import Path

import pytest
import yaml

from lttools.backbone.config import BackboneConfig
from lttools.config import from_section
from lttools.data.images import PRESETS
from lttools.data.prepared import DataConfig
from lttools.extract import ExtractConfig
from lttools.feature_io import ImportConfig
from lttools.retrain.plan import make_plan

ROOT = Path(__file__).resolve().parents[1]
FILES = [ROOT / "params.yaml", ROOT / "pipelines/imported/params.yaml",
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
