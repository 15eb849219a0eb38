"""What a stage-2 method is: its hyper-parameters (defaults, valid ranges) and the pieces it
is composed of. The methods themselves are in methods.py; registry.py finds them by name.

A method is a composition of optional pieces; the trainer applies whichever are set:

    sampling(counts, hp, epoch, epochs, heads)  -> class draw probabilities [H, K] (else
                                                   instance-balanced shuffling)
    class_weights(counts, hp, epoch, epochs)    -> per-class loss weights [H, K]
    train_logits(z, y, hp, counts)              -> logits the loss sees (offsets, margins)
    loss(z, y, hp, counts)                      -> per-sample loss [H, B] (default: CE)
    loss_grad(z, y, hp, counts)                 -> optional: d loss_i / d z_i [H, B, K], the
                                                   per-sample loss's gradient (CE's is built
                                                   in); training then needs no autograd on
                                                   heads with a pullback (heads.py)
    posthoc(w, b, hp, counts, options)          -> transformed linear head used to predict
    constraint                                  -> "maxnorm" (projected after step / epoch)
    class_aware                                 -> class-aware sampling (classifier-balancing's
                                                   ClassAwareSampler), this many samples per
                                                   class visit; an epoch as the training loop
                                                   of `class_aware_reference` counts it
    lr_scale                                    -> parameter name -> hyper-parameter that
                                                   multiplies the learning rate of that parameter

A hyper-parameter may default to "auto": its value then follows from the training set's class
counts (imbalance ratio, class count), as the method's reference configures it.

`counts` is None for a prior-free method: it cannot read the class counts by accident.
"""
from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Callable

from lttools.config import check_type
from lttools.errors import LTError, check_range

AUTO = "auto"


@dataclass(frozen=True)
class Param:
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    low_inclusive: bool = True
    high_inclusive: bool = True
    choices: tuple[str, ...] | None = None  # a categorical param; cannot be a grid
    integer: bool = False
    auto: Callable[[Any], float] | None = None  # "auto": the value for the training counts

    def check(self, name: str, value: Any) -> None:
        if value == AUTO and self.auto is not None:
            return
        if self.choices is not None:
            if value not in self.choices:
                raise LTError(f"{name} = {value!r} is not valid; choose one of "
                              f"{', '.join(self.choices)}")
            return
        check_type(name, value, float)
        if self.integer and int(value) != value:
            raise LTError(f"{name} = {value!r} must be an integer")
        check_range(name, value, self.low, self.high, self.low_inclusive, self.high_inclusive)

    def describe(self) -> str:
        if self.choices is not None:
            return "{" + ", ".join(self.choices) + "}"
        if self.auto is not None:
            return f"auto or {self._interval()}"
        return self._interval()

    def _interval(self) -> str:
        lo = "-inf" if self.low is None else f"{self.low:g}"
        hi = "inf" if self.high is None else f"{self.high:g}"
        return (("[" if self.low_inclusive and self.low is not None else "(") + f"{lo}, {hi}"
                + ("]" if self.high_inclusive and self.high is not None else ")"))


# Optimisation hyper-parameters every method has. Per-head ones may be grids; the schedule
# ones (epochs, batch_size) are shared by all heads of a stage.
TRAIN_PARAMS: dict[str, Param] = {
    "lr": Param(5e-4, "SGD learning rate (scale it with batch_size)", 0, None, False),
    "momentum": Param(0.9, "SGD momentum", 0, 1, True, False),
    "weight_decay": Param(0.0, "L2 weight decay", 0, None),
}
SCHEDULE_PARAMS: dict[str, Param] = {
    "epochs": Param(20, "epochs over the cached features (0: use the stage-1 head as is)", 0,
                    10_000, integer=True),
    "batch_size": Param(64, "batch size", 1, None, integer=True),
}


@dataclass(frozen=True)
class Method:
    name: str
    description: str
    needs_prior: bool
    params: dict[str, Param] = field(default_factory=dict)
    head: str = "linear"
    reinit: bool = False
    sampling: Callable | None = None
    class_weights: Callable | None = None
    train_logits: Callable | None = None
    loss: Callable | None = None
    loss_grad: Callable | None = None
    posthoc: Callable | None = None
    constraint: str | None = None
    class_aware: int | None = None
    class_aware_reference: str = "classifier_balancing"  # whose epoch length (sampling.EPOCH_STEPS)
    lr_scale: dict[str, str] = field(default_factory=dict)
    train_defaults: dict[str, Any] = field(default_factory=dict)

    def all_params(self) -> dict[str, Param]:
        """The method's own params, then the optimisation ones, with this method's defaults."""
        out = dict(self.params)
        for name, p in {**TRAIN_PARAMS, **SCHEDULE_PARAMS}.items():
            default = self.train_defaults.get(name, p.default)
            out[name] = dataclasses.replace(p, default=default)
        return out
