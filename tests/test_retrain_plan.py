import pytest

from lttools.errors import LTError
from lttools.retrain.plan import make_plan
from lttools.retrain.registry import all_methods


def test_grid_expansion_and_seed_order():
    plan = make_plan("los", {"eps": [0.9, 0.98], "lr": [1e-3, 1e-2]}, {"seeds": [0, 1, 2]})
    assert plan.num_heads == 12 and len(plan.grid) == 4
    assert sorted(plan.grid_keys) == ["eps", "lr"]
    assert {(g["eps"], g["lr"]) for g in plan.grid} == {(0.9, 1e-3), (0.9, 1e-2), (0.98, 1e-3),
                                                        (0.98, 1e-2)}


def test_precedence_entry_over_method_default_over_shared():
    shared = {"seeds": [0], "lr": 1e-3, "epochs": 7}
    assert make_plan("ce", {}, shared).grid[0]["lr"] == 1e-3
    assert make_plan("crt", {}, shared).grid[0]["lr"] == 0.025  # the method's own default
    assert make_plan("crt", {"lr": 0.2}, shared).grid[0]["lr"] == 0.2
    assert make_plan("ce", {}, shared).epochs == 7
    assert make_plan("tau_norm", {}, shared).epochs == 0
    assert make_plan("weight_balancing", {}, shared).options["maxnorm_every"] == "step"


def test_method_defaults_to_the_key_and_entry_may_rename():
    assert make_plan("los", None, {}).method.name == "los"
    assert make_plan("los_strong", {"method": "los", "eps": 0.99}, {}).method.name == "los"


def test_unknown_method_lists_all_valid_names():
    with pytest.raises(LTError) as err:
        make_plan("lso", {}, {})
    for name in all_methods():
        assert name in str(err.value)


@pytest.mark.parametrize("entry,needle", [
    ({"eps": 1.0}, r"methods.los.eps = 1.0 is out of range; valid range: \[0, 1\)"),
    ({"eps": -0.1}, "methods.los.eps"),
    ({"eps": [0.9, 1.5]}, "methods.los.eps = 1.5"),
    ({"lr": 0}, r"methods.los.lr = 0 is out of range; valid range: \(0, inf\)"),
    ({"eps": []}, "empty grid"),
    ({"epochs": [10, 20]}, "cannot be a grid"),
    ({"epochs": 2.5}, "must be an integer"),
    ({"eps": "big"}, "must be a number"),
    ({"gamma": 2}, "unknown parameter.*gamma.*valid: .*eps"),
])
def test_bad_hyper_parameters_name_param_and_range(entry, needle):
    with pytest.raises(LTError, match=needle):
        make_plan("los", entry, {"seeds": [0]})


def test_bad_choice_and_empty_seeds():
    with pytest.raises(LTError, match="maxnorm_every.*step, epoch"):
        make_plan("weight_balancing", {"maxnorm_every": "batch"}, {})
    with pytest.raises(LTError, match="retrain.seeds is empty"):
        make_plan("ce", {}, {"seeds": []})
