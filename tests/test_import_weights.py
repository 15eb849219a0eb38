"""Checkpoints from elsewhere into an lttools backbone: every wrapping and every reference's key
naming, produced here by renaming our own modules to those schemes (the inverse maps are
written out below by hand), loads back to the same tensors; a head for another class count is
left out; bad checkpoints are errors naming the key and the shapes."""
import argparse
import pickle

import numpy as np
import pytest
import torch

from lttools.errors import LTError
from lttools.models import create_backbone
from lttools.models.import_weights import load_into, read_checkpoint

CIFAR_BLOCKS = {"resnet32": [5, 5, 5], "resnet34": [3, 4, 6, 3]}


def cifar_to_reference(sd, arch, downsample):
    """lttools CIFAR names -> conv1 / bn1 / layer{s}.{j} (LDAM-DRW, MiSLAS, weight balancing)."""
    out = {}
    starts = [sum(CIFAR_BLOCKS[arch][:s]) for s in range(len(CIFAR_BLOCKS[arch]))]
    for key, value in sd.items():
        if key in ("mean", "std"):
            continue  # the references normalise outside the model
        if key.startswith("stem.0."):
            key = "conv1." + key[len("stem.0."):]
        elif key.startswith("stem.1."):
            key = "bn1." + key[len("stem.1."):]
        elif key.startswith("layers."):
            index, rest = key[len("layers."):].split(".", 1)
            stage = max(s for s, start in enumerate(starts) if start <= int(index))
            if downsample:
                rest = rest.replace("shortcut.", "downsample.")
            key = f"layer{stage + 1}.{int(index) - starts[stage]}.{rest}"
        out[key] = value
    return out


def torchvision_names(sd):
    """lttools torchvision wrapper -> torchvision's own names (net. dropped, fc kept)."""
    return {k[len("net."):] if k.startswith("net.") else k: v for k, v in sd.items()
            if k not in ("mean", "std")}


def prefixed(sd, prefix):
    return {prefix + k: v for k, v in sd.items()}


def head_apart(sd, head_prefix=""):
    body = {k: v for k, v in sd.items() if not k.startswith("fc.")}
    head = {head_prefix + k: v for k, v in sd.items() if k.startswith("fc.")}
    return body, head


def ldam(sd):
    """LDAM-DRW's ResNet-32: `linear` is a NormedLinear, weight [D, K], no bias."""
    out = cifar_to_reference(sd, "resnet32", downsample=False)
    w = out.pop("fc.weight")
    out.pop("fc.bias")
    return {**out, "linear.weight": w.t().contiguous()}


def mislas(sd):
    """MiSLAS: backbone and Classifier (its `fc`) saved apart, both under DataParallel."""
    body, head = head_apart(cifar_to_reference(sd, "resnet32", downsample=False))
    return {"state_dict_model": prefixed(body, "module."),
            "state_dict_classifier": prefixed(head, "module."), "epoch": 10, "best_acc1": 1.0}


def weight_balancing(sd):
    """Weight balancing / the LOS paper's code: torchvision-style ResNet-34 under `encoder.`."""
    return prefixed(cifar_to_reference(sd, "resnet34", downsample=True), "encoder.")


def classifier_balancing(sd):
    """classifier-balancing: {'state_dict_best': {'feat_model': ..., 'classifier': ...}}."""
    body, head = head_apart(torchvision_names(sd))
    return {"state_dict_best": {"feat_model": prefixed(body, "module."),
                                "classifier": prefixed(head, "module.")}, "epoch": 90}


SCHEMES = {  # name: (arch, produce the reference's file contents, has a usable head)
    "ldam_drw_resnet32": ("resnet32", ldam, False),
    "mislas_resnet32": ("resnet32", mislas, True),
    "weight_balancing_resnet34": ("resnet34", weight_balancing, True),
    "torchvision_resnet50": ("resnet50", torchvision_names, True),
    "torchvision_resnext50": ("resnext50_32x4d", torchvision_names, True),
    "classifier_balancing_resnext50": ("resnext50_32x4d", classifier_balancing, True),
}
WRAPPINGS = {
    "bare": lambda sd: sd,
    "state_dict": lambda sd: {"state_dict": sd, "epoch": 3},
    "model": lambda sd: {"model": sd},
    "net": lambda sd: {"net": sd},
    "module": lambda sd: prefixed(sd, "module.") if all(isinstance(k, str) for k in sd) else sd,
}


def _random_model(arch, k=10, seed=0):
    torch.manual_seed(seed)
    model = create_backbone(arch, k, 3)
    with torch.no_grad():  # BatchNorm statistics too, so that a missed key shows
        for name, t in model.state_dict().items():
            if t.is_floating_point() and name not in ("mean", "std"):
                t.copy_(torch.randn_like(t))
    return model


# MiSLAS and classifier-balancing files have their own fixed wrapping: only as they are.
CASES = [(scheme, wrapping) for scheme in sorted(SCHEMES) for wrapping in sorted(WRAPPINGS)
         if wrapping == "bare" or scheme not in ("mislas_resnet32", "classifier_balancing_resnext50")]


@pytest.mark.parametrize("scheme,wrapping", CASES)
def test_every_scheme_and_wrapping_loads_back_the_same_tensors(tmp_path, scheme, wrapping):
    arch, produce, has_head = SCHEMES[scheme]
    source = _random_model(arch)
    contents = WRAPPINGS[wrapping](produce(source.state_dict()))
    torch.save(contents, tmp_path / "ckpt.pth")
    target = _random_model(arch, seed=1)
    weights = read_checkpoint(tmp_path / "ckpt.pth", target)
    load_into(target, weights)
    assert weights.has_head == has_head
    want, got = source.state_dict(), target.state_dict()
    for key in want:
        if key in ("mean", "std") or (key.startswith("fc.") and not has_head):
            continue
        assert torch.equal(got[key], want[key]), (scheme, wrapping, key)
    if not has_head:
        assert "a head is fitted" in weights.note and "linear.weight (64, 10)" in weights.note


def test_a_head_for_another_class_count_is_left_out(tmp_path):
    torch.save(_random_model("resnet32", k=100).state_dict(), tmp_path / "c100.pth")
    weights = read_checkpoint(tmp_path / "c100.pth", _random_model("resnet32", k=10))
    assert not weights.has_head and "fc.weight (100, 64)" in weights.note
    assert not any(k.startswith("fc.") for k in weights.state)


def test_a_checkpoint_of_another_arch_names_key_and_shapes(tmp_path):
    torch.save(weight_balancing(_random_model("resnet34").state_dict()), tmp_path / "r34.pth")
    with pytest.raises(LTError, match=r"r34.pth: 'encoder.conv1.weight' has shape \(64, 3, 3, 3\), "
                                      r"but resnet32 expects \(16, 3, 3, 3\) for 'stem.0.weight'"):
        read_checkpoint(tmp_path / "r34.pth", _random_model("resnet32"))


def test_missing_and_unknown_keys_are_named(tmp_path):
    sd = _random_model("resnet32").state_dict()
    sd.pop("layers.14.bn2.weight")
    torch.save(sd, tmp_path / "partial.pth")
    with pytest.raises(LTError, match=r"partial.pth lacks 'layers.14.bn2.weight' \(and 0 more"):
        read_checkpoint(tmp_path / "partial.pth", _random_model("resnet32"))
    sd = _random_model("resnet32").state_dict()
    sd["projector.weight"] = torch.zeros(3)
    torch.save(sd, tmp_path / "extra.pth")
    with pytest.raises(LTError, match="has no place for 'projector.weight'"):
        read_checkpoint(tmp_path / "extra.pth", _random_model("resnet32"))


@pytest.mark.parametrize("contents,needle", [
    ([1, 2, 3], "is not a state dict (it holds a list)"),
    ({"epoch": 3, "optimizer": {"lr": 0.1}}, "it holds a dict with keys ['epoch', 'optimizer']"),
    (torch.zeros(3), "it holds a Tensor"),
])
def test_not_a_state_dict(tmp_path, contents, needle):
    torch.save(contents, tmp_path / "x.pth")
    with pytest.raises(LTError) as err:
        read_checkpoint(tmp_path / "x.pth", _random_model("resnet32"))
    assert needle in str(err.value)


def test_a_pickled_module_is_not_unpickled(tmp_path):
    """weights_only=True: a checkpoint that pickles code (here a whole module, as the LOS
    paper's stage 1 saves) is refused, naming the class and how to re-save the weights."""
    with open(tmp_path / "module.pth", "wb") as f:
        torch.save(torch.nn.Linear(2, 2), f)
    with pytest.raises(LTError) as err:
        read_checkpoint(tmp_path / "module.pth", _random_model("resnet32"))
    text = str(err.value)
    assert "it holds a torch.nn.modules.linear.Linear object, which torch.load(weights_only=True)" \
           " refuses" in text
    assert "lttools loads only state dicts" in text
    assert "`torch.save(model.state_dict(), 'weights.pth')`" in text
    assert "\x1b" not in text and text.endswith("`")  # no colour codes, not cut mid-word
    (tmp_path / "garbage.pth").write_bytes(pickle.dumps("not a checkpoint", protocol=2)[:5])
    with pytest.raises(LTError, match="garbage.pth cannot be read as a checkpoint"):
        read_checkpoint(tmp_path / "garbage.pth", _random_model("resnet32"))


def _usable(model):
    """_random_model with positive BatchNorm variances, so that its outputs are numbers."""
    with torch.no_grad():
        for name, buf in model.named_buffers():
            if name.endswith("running_var"):
                buf.abs_().add_(0.5)
    return model


def _outputs(model, seed=0):
    assert torch.isfinite(next(model.parameters())).all()
    torch.manual_seed(seed)
    x = torch.rand(2, 3, 32, 32)
    model.eval()
    with torch.no_grad():
        return model(x)


def _loads_as_saved(path, contents, source, arch):
    """`contents` saved to `path` loads into a fresh `arch` that then computes what `source`
    computes."""
    torch.save(contents, path)
    target = _random_model(arch, seed=1)
    load_into(target, read_checkpoint(path, target))
    out = _outputs(target)
    assert torch.isfinite(out).all() and torch.equal(out, _outputs(source))


def test_a_mislas_stage1_checkpoint_with_its_numpy_ece(tmp_path):
    """MiSLAS's train_stage1.py saves epoch, the model and classifier state dicts under
    DataParallel, best_acc1 (a tensor) and its_ece (a numpy float64)."""
    source = _usable(_random_model("resnet32"))
    body, head = head_apart(cifar_to_reference(source.state_dict(), "resnet32", downsample=False))
    _loads_as_saved(tmp_path / "mislas.pth.tar",
                    {"epoch": 200, "state_dict_model": prefixed(body, "module."),
                     "state_dict_classifier": prefixed(head, "module."),
                     "best_acc1": torch.tensor(41.3), "its_ece": np.float64(0.1234)},
                    source, "resnet32")


def test_a_torchvision_references_checkpoint_with_its_args(tmp_path):
    """torchvision's references/classification/train.py saves model, optimizer, lr_scheduler,
    epoch and args (an argparse.Namespace)."""
    source = _usable(_random_model("resnet18"))
    optimizer = torch.optim.SGD(source.parameters(), lr=0.1, momentum=0.9)
    scheduler = torch.optim.lr_scheduler.StepLR(optimizer, 30)
    args = argparse.Namespace(model="resnet18", lr=0.1, epochs=90, data_path="/data/in1k",
                              weights=None, amp=False)
    _loads_as_saved(tmp_path / "checkpoint.pth",
                    {"model": torchvision_names(source.state_dict()),
                     "optimizer": optimizer.state_dict(), "lr_scheduler": scheduler.state_dict(),
                     "epoch": 89, "args": args},
                    source, "resnet18")


def test_a_torchvision_arch_with_encoder_parameters(tmp_path):
    """vit_b_32's own parameters begin with `encoder.`: kept, not stripped as a prefix."""
    source = _random_model("vit_b_32")
    sd = torchvision_names(source.state_dict())
    assert any(k.startswith("encoder.") for k in sd)
    torch.save({"model": sd, "args": argparse.Namespace(model="vit_b_32")}, tmp_path / "vit.pth")
    target = _random_model("vit_b_32", seed=1)
    load_into(target, read_checkpoint(tmp_path / "vit.pth", target))
    x = torch.rand(1, 3, 224, 224)
    source.eval(), target.eval()
    with torch.no_grad():
        assert torch.equal(target(x), source(x))
