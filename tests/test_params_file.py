"""params.yaml (and every preset, and the imported-features example) lists every param the
code reads, with its default: DVC refuses `dvc exp run -S <key>=...` for a key the file lacks
("use +<key>"), so a missing key is a param a user cannot set the way the docs say."""
import dataclasses

import pytest
import yaml

from lttools.backbone.config import BackboneConfig
from lttools.config import from_section
from lttools.data.prepared import DataConfig
from lttools.features.arrays import ImportConfig
from lttools.features.extract import ExtractConfig
from lttools.retrain.plan import SHARED_KEYS, check_shared
from lttools.retrain.spec import SCHEDULE_PARAMS, TRAIN_PARAMS
from lttools.stats import Settings
from pipeline_helpers import ROOT

KEYS = {"data": DataConfig, "backbone": BackboneConfig, "features": ExtractConfig,
        "uncertainty": Settings, "import": ImportConfig}
RETRAIN_KEYS = {*SHARED_KEYS, *TRAIN_PARAMS, *SCHEDULE_PARAMS}
FILES = ["params.yaml", *sorted(p.relative_to(ROOT).as_posix()
                                for p in (ROOT / "presets").glob("*.yaml")),
         "examples/imported/params.yaml"]


def typed_keys(section: str) -> set[str]:
    if section == "retrain":
        return RETRAIN_KEYS
    fields = {f.name for f in dataclasses.fields(KEYS[section])}
    return fields - {"seed"} if section == "backbone" else fields  # replicates.seeds sets it


@pytest.mark.parametrize("path", FILES)
def test_every_section_lists_every_param(path):
    params = yaml.safe_load((ROOT / path).read_text())
    sections = [s for s in (*KEYS, "retrain") if s in params]
    assert sections, path
    for section in sections:
        missing = sorted(typed_keys(section) - set(params[section]))
        assert not missing, f"{path}: {section}: lacks {', '.join(missing)}"


@pytest.mark.parametrize("path", [f for f in FILES if not f.startswith("examples/")])
def test_every_pipeline_names_its_backbone_replicates(path):
    from lttools.replicates import replicate_seeds

    params = yaml.safe_load((ROOT / path).read_text())
    seeds = replicate_seeds(params)
    assert seeds == ([0, 1, 2] if path == "params.yaml" else [0]), path


def test_params_yaml_as_written_builds_every_typed_config():
    params = yaml.safe_load((ROOT / "params.yaml").read_text())
    from_section(DataConfig, params["data"], "data")
    BackboneConfig.from_params(params["backbone"])
    from_section(ExtractConfig, params["features"], "features")
    Settings(**params["uncertainty"])
    check_shared(params["retrain"])
