"""Someone else's checkpoint into an lttools backbone.

Read with `torch.load(weights_only=True)`, which allows tensors and plain containers; of other
objects only the harmless ones that references store beside the weights: numpy scalars and
dtypes (MiSLAS's `its_ece`) and `argparse.Namespace` (torchvision's `args`). A bare state dict, or one under `state_dict`,
`model`, `net`, `state_dict_best` or `model_state_dict`; a backbone and a head saved apart
(classifier-balancing's `feat_model` / `classifier`, MiSLAS's `state_dict_model` /
`state_dict_classifier`) are merged. Key names are mapped to lttools' own:

- wrappers: `module.` (DataParallel / DDP), `backbone.`, `model.`, `_orig_mod.`
  (torch.compile) prefixes are dropped, and `encoder.` (weight balancing's ResNet-34) for the
  CIFAR archs only: torchvision models such as `vit_b_32` have parameters of that name;
- the head: `fc`, `linear` (LDAM-DRW), `classifier`, `classifier.fc` (MiSLAS), `head` -> `fc`;
- CIFAR ResNets (LDAM-DRW / MiSLAS ResNet-32, weight balancing / LOS ResNet-34; the LOS
  paper's keys carry no prefix):
  `conv1`, `bn1` -> `stem.0`, `stem.1`; `layer{s}.{j}` -> `layers.{i}`; `downsample` ->
  `shortcut`;
- torchvision models keep torchvision's names under `net.`, their head becomes `fc`.

A head whose shape does not fit this dataset's classes (another class count, LDAM's
normalised linear layer) is left out: the caller fits one. A key the arch has no place for,
a missing key, or a shape that does not fit is an error naming the key as the file names it,
with the expected and the found shape.
"""
from __future__ import annotations

import argparse
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from lttools.errors import LTError
from lttools.models.normalized import NormalizedBackbone

WRAPPERS = ("state_dict", "model", "net", "state_dict_best", "model_state_dict")
APART = (("feat_model", "classifier"), ("state_dict_model", "state_dict_classifier"))
PREFIXES = ("module.", "backbone.", "model.", "_orig_mod.")
CIFAR_PREFIXES = PREFIXES + ("encoder.",)  # weight balancing's ResNet-34 keeps its net there
HEAD_NAMES = ("classifier.fc.", "linear.", "classifier.", "head.", "fc.")


@dataclass
class ImportedWeights:
    state: dict[str, torch.Tensor]  # lttools names; without fc.* when the head was left out
    has_head: bool
    original_names: dict[str, str]  # lttools name -> the file's name
    note: str  # what was mapped or left out, for the log and the store


def _is_state_dict(obj: Any) -> bool:
    return isinstance(obj, dict) and bool(obj) and all(
        isinstance(k, str) and isinstance(v, torch.Tensor) for k, v in obj.items())


def _strip(key: str, prefixes: tuple[str, ...]) -> str:
    changed = True
    while changed:
        changed = False
        for prefix in prefixes:
            if key.startswith(prefix):
                key, changed = key[len(prefix):], True
    return key


def unwrap(obj: Any, source: str,
           prefixes: tuple[str, ...] = PREFIXES) -> dict[str, tuple[str, torch.Tensor]]:
    """canonical key (wrapper prefixes stripped) -> (the file's key, tensor)."""
    if _is_state_dict(obj):
        return {_strip(k, prefixes): (k, v) for k, v in obj.items()}
    if isinstance(obj, dict):
        for body, head in APART:
            if body in obj and head in obj:  # the head's own keys: `fc.*`, or a bare Linear's
                out = unwrap(obj[body], source, prefixes)
                out.update({(k if k.startswith(HEAD_NAMES) else f"fc.{k}"): (f"{head}/{orig}", v)
                            for k, (orig, v) in unwrap(obj[head], source, prefixes).items()})
                return out
        for key in WRAPPERS:
            if key in obj:
                return unwrap(obj[key], source, prefixes)
    what = (f"a dict with keys {sorted(map(str, obj))[:8]}" if isinstance(obj, dict)
            else f"a {type(obj).__name__}")
    raise LTError(f"{source} is not a state dict (it holds {what}); lttools reads a state dict, "
                  f"bare or under one of {', '.join(WRAPPERS)}")


def _head_name(key: str, torchvision_head: str | None) -> str:
    names = HEAD_NAMES if torchvision_head is None else (f"{torchvision_head}.", "fc.")
    for name in names:
        if key.startswith(name):
            return "fc." + key[len(name):]
    return key


def _cifar_name(key: str, blocks: list[int]) -> str:
    if key.startswith("conv1."):
        return "stem.0." + key[len("conv1."):]
    if key.startswith("bn1."):
        return "stem.1." + key[len("bn1."):]
    m = re.match(r"layer(\d+)\.(\d+)\.(.*)", key)
    if m:
        stage, j, rest = int(m[1]), int(m[2]), m[3]
        if rest.startswith("downsample."):
            rest = "shortcut." + rest[len("downsample."):]
        return f"layers.{sum(blocks[:stage - 1]) + j}.{rest}"
    return key


def lttools_name(key: str, model: NormalizedBackbone) -> str:
    torchvision_head = getattr(model, "head_name", None)
    key = _head_name(key, torchvision_head)
    if key.startswith("fc.") or key in ("mean", "std"):
        return key
    if torchvision_head is not None:
        return key if key.startswith("net.") else "net." + key
    return _cifar_name(key, model.blocks)


def map_weights(raw: dict[str, tuple[str, torch.Tensor]], model: NormalizedBackbone,
                source: str) -> ImportedWeights:
    expected = model.state_dict()
    state, names = {}, {}
    for key, (orig, tensor) in raw.items():
        new = lttools_name(key, model)
        state[new], names[new] = tensor, orig
    head = {k: v for k, v in state.items() if k.startswith("fc.")}
    has_head = set(head) == {"fc.weight", "fc.bias"} and all(
        v.shape == expected[k].shape for k, v in head.items())
    note = "head from the checkpoint"
    if not has_head:
        found = ", ".join(f"{names[k]} {tuple(v.shape)}" for k, v in head.items()) or "none"
        note = (f"no head for {expected['fc.weight'].shape[0]} classes in the checkpoint "
                f"(found: {found}); a head is fitted on the cached features")
        state = {k: v for k, v in state.items() if not k.startswith("fc.")}
    for key, tensor in state.items():
        if key not in expected:
            raise LTError(f"{source}: the arch {model.arch_name} has no place for {names[key]!r} "
                          f"(read as {key!r}); is the checkpoint of another arch?")
        if tensor.shape != expected[key].shape:
            raise LTError(f"{source}: {names[key]!r} has shape {tuple(tensor.shape)}, but "
                          f"{model.arch_name} expects {tuple(expected[key].shape)} for {key!r}; "
                          "is the checkpoint of another arch?")
    optional = ("mean", "std")  # the normalisation comes from backbone.normalization
    missing = [k for k in expected if k not in state and not k.startswith("fc.")
               and k not in optional and not k.endswith("num_batches_tracked")]
    if missing:
        raise LTError(f"{source} lacks {missing[0]!r} (and {len(missing) - 1} more keys) that "
                      f"{model.arch_name} needs; is the checkpoint of another arch?")
    return ImportedWeights(state, has_head, names, note)


def _safe_globals() -> list:
    """What references store beside their weights and torch.load(weights_only=True) refuses
    by default, though it cannot run code: numpy scalars and dtypes, argparse.Namespace."""
    try:
        from numpy._core.multiarray import scalar
    except ImportError:  # numpy 1.x
        from numpy.core.multiarray import scalar
    dtypes = [getattr(np.dtypes, n) for n in dir(np.dtypes) if n.endswith("DType")]
    return [argparse.Namespace, np.dtype, *dtypes, (scalar, "numpy.core.multiarray.scalar"),
            (scalar, "numpy._core.multiarray.scalar")]


def _refusal(path: Path, exc: Exception) -> LTError:
    """What torch refused, in words: the class it would not unpickle, or the first sentence of
    its message, without terminal colour codes."""
    text = re.sub(r"\x1b\[[0-9;]*m", "", str(exc))
    found = re.search(r"GLOBAL (\S+) was not an allowed global", text)
    if found:
        what = (f"it holds a {found[1]} object, which torch.load(weights_only=True) refuses "
                "(unpickling an object can run code)")
    else:
        detail = re.sub(r"\s+", " ", text.split("WeightsUnpickler error:")[-1]).strip()
        what = f"{type(exc).__name__}: {detail.split('. ')[0].rstrip('.')}"
    return LTError(f"{path} cannot be read as a checkpoint: {what}. lttools loads only state "
                   "dicts, safely (tensors, numbers, strings, lists, dicts; numpy scalars and "
                   "argparse.Namespace beside them). Re-save the weights where they load: "
                   "`torch.save(model.state_dict(), 'weights.pth')`")


def read_checkpoint(path: str | Path, model: NormalizedBackbone) -> ImportedWeights:
    path = Path(path)
    if not path.exists():
        raise LTError(f"backbone.init: {path} does not exist")
    try:
        with torch.serialization.safe_globals(_safe_globals()):
            obj = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as exc:  # noqa: BLE001 — a foreign, damaged or pickled-code file
        raise _refusal(path, exc) from exc
    torchvision = getattr(model, "head_name", None) is not None
    raw = unwrap(obj, str(path), PREFIXES if torchvision else CIFAR_PREFIXES)
    return map_weights(raw, model, str(path))


def load_into(model: NormalizedBackbone, weights: ImportedWeights) -> None:
    """Copy the imported tensors into `model` (the head too when the checkpoint had one)."""
    state = model.state_dict()
    state.update({k: v.to(state[k].dtype) for k, v in weights.state.items()
                  if k not in ("mean", "std")})
    model.load_state_dict(state)
