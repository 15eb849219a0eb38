"""Backbone replicates: stage 1 trained once per seed of `replicates.seeds`, each with its own
feature store, every method re-trained on each (docs/how-sure.md). Each replicate's outputs
have their own paths, so that DVC caches them apart: adding a seed trains only that backbone.

    models/backbones/<seed>.pt            the backbone (and <seed>.ckpt while it trains)
    metrics/backbone/<seed>/              its stage-1 curves and test results (dvclive)
    data/features/<seed>/features.h5      its feature store
"""
from __future__ import annotations

from pathlib import Path
from typing import Any

from lttools.errors import LTError

BACKBONES = Path("models/backbones")
CURVES = Path("metrics/backbone")
FEATURES = Path("data/features")
MAX_SEED = 2 ** 31 - 1


def replicate_seeds(params: dict[str, Any]) -> list[int]:
    """The seeds of `replicates.seeds`, checked: a non-empty list of distinct whole numbers."""
    section = params.get("replicates")
    if "seed" in (params.get("backbone") or {}):
        raise LTError("backbone.seed is now replicates.seeds (a list: one backbone per seed, "
                      "e.g. `replicates: {seeds: [0, 1, 2]}`); move it there")
    if not isinstance(section, dict) or "seeds" not in section:
        raise LTError("params.yaml has no `replicates: {seeds: [...]}`: the stage-1 seeds, one "
                      "backbone each (e.g. [0, 1, 2]; [0] for one backbone)")
    seeds = section["seeds"]
    if not isinstance(seeds, list) or not seeds or not all(
            isinstance(s, int) and not isinstance(s, bool) and 0 <= s <= MAX_SEED for s in seeds):
        raise LTError(f"replicates.seeds = {seeds!r} must be a non-empty list of whole numbers "
                      f"from 0 to {MAX_SEED} (one backbone per seed; [0] for one backbone)")
    twice = sorted({s for s in seeds if seeds.count(s) > 1})
    if twice:
        raise LTError(f"replicates.seeds = {seeds!r} names seed(s) {twice} more than once: a "
                      "seed is one backbone; list each once")
    return list(seeds)


def backbone_path(seed: int) -> Path:
    return BACKBONES / f"{seed}.pt"


def checkpoint_path(seed: int) -> Path:
    return BACKBONES / f"{seed}.ckpt"


def curves_dir(seed: int) -> Path:
    return CURVES / str(seed)


def features_path(seed: int) -> Path:
    return FEATURES / str(seed) / "features.h5"


def for_seed(pattern: str, seed: int) -> str:
    """A path pattern with `{seed}` filled in (a pattern without it names one replicate)."""
    return pattern.replace("{seed}", str(seed))
