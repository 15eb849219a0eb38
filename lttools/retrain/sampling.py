"""Which training samples each head sees in an epoch, one seeded stream per head.

- instance-balanced: a shuffle of all N samples;
- class probabilities p_j (square-root, progressive): N draws, class first, then uniformly
  within the class, with replacement;
- class-aware (classifier-balancing's ClassAwareSampler, used by cRT, LWS and MiSLAS, 4
  samples per class visit in both): classes are visited in shuffled cycles, every class once
  per cycle; a visit takes `per_visit` consecutive samples from the class's own shuffled
  cycle. The sampler's length is n_max x K, but neither reference uses it up: an epoch stops
  after a number of steps computed from the training set's size N (EPOCH_STEPS), so it is
  about N samples. The cycles carry over from one epoch to the next, as the reference's
  sampler object does. `epoch_size: cycle` (ours) runs the whole n_max x K instead.
"""
from __future__ import annotations

import math
from typing import Callable

import torch

# Steps in a class-aware epoch of a training set of n samples at batch size b, as each
# reference's training loop counts them:
EPOCH_STEPS: dict[str, Callable[[int, int], int]] = {
    # classifier-balancing run_networks.py: epoch_steps = int(N / batch_size); break when
    # step == epoch_steps
    "classifier_balancing": lambda n, b: n // b,
    # MiSLAS train_stage2.py: end_steps = ceil(N / batch_size); break when i > end_steps, so
    # steps 0 .. end_steps run
    "mislas": lambda n, b: math.ceil(n / b) + 1,
}
EPOCH_SIZES = ("reference", "cycle")  # reference: EPOCH_STEPS; cycle: n_max x K samples


def instance_epoch(gens: list[torch.Generator], n: int) -> torch.Tensor:
    return torch.stack([torch.randperm(n, generator=g) for g in gens])


def class_prob_epoch(gens: list[torch.Generator], labels: torch.Tensor,
                     class_probs: torch.Tensor) -> torch.Tensor:
    """N draws per head from its class distribution class_probs [H, K]."""
    lab = labels.cpu()
    counts = torch.bincount(lab, minlength=class_probs.shape[-1]).float()
    per_sample = (class_probs.cpu() / counts.clamp_min(1))[:, lab]  # [H, N]
    return torch.stack([torch.multinomial(per_sample[h], len(lab), replacement=True, generator=g)
                        for h, g in enumerate(gens)])


class _Cycle:
    """A list visited in shuffled passes: reshuffled each time it is used up."""

    def __init__(self, items: torch.Tensor, generator: torch.Generator):
        self.items, self.gen = items, generator
        self.order, self.pos = items, len(items)  # the first take shuffles

    def take(self, n: int) -> torch.Tensor:
        out = []
        while n > 0:
            if self.pos == len(self.items):
                self.order = self.items[torch.randperm(len(self.items), generator=self.gen)]
                self.pos = 0
            k = min(n, len(self.items) - self.pos)
            out.append(self.order[self.pos:self.pos + k])
            self.pos += k
            n -= k
        return torch.cat(out) if out else self.items[:0]


class ClassAwareSampler:
    """One head's class-aware stream (see the module docstring)."""

    def __init__(self, labels: torch.Tensor, per_visit: int, generator: torch.Generator):
        lab = labels.cpu()
        present = torch.unique(lab)
        self.per_visit = per_visit
        self.classes = _Cycle(torch.arange(len(present)), generator)
        self.members = [_Cycle(torch.nonzero(lab == c).flatten(), generator) for c in present]
        self.cycle_size = max(len(m.items) for m in self.members) * len(present)

    def epoch(self, size: int) -> torch.Tensor:
        """The next `size` samples of the stream (whole visits drawn, as the reference's
        generator draws a visit's samples at once)."""
        visits = math.ceil(size / self.per_visit)
        order = self.classes.take(visits)
        out = torch.empty(visits, self.per_visit, dtype=torch.long)
        for c in range(len(self.members)):  # each class's items, in its visits' order
            rows = torch.nonzero(order == c).flatten()
            if len(rows):
                out[rows] = self.members[c].take(len(rows) * self.per_visit).view(-1, self.per_visit)
        return out.flatten()[:size]


def class_aware_epoch_size(reference: str, epoch_size: str, n: int, batch_size: int,
                           cycle_size: int) -> int:
    """Samples in one class-aware epoch: the reference's steps x batch size (at most the
    sampler's n_max x K, where its loader would run out), or the whole cycle."""
    if epoch_size == "cycle":
        return cycle_size
    return min(EPOCH_STEPS[reference](n, batch_size) * batch_size, cycle_size)


class EpochSampler:
    """The indices [H, n] every head trains on in each epoch, for a method's sampling."""

    def __init__(self, method, labels: torch.Tensor, gens: list[torch.Generator],
                 batch_size: int = 64, epoch_size: str = "reference"):
        self.method, self.labels, self.gens = method, labels, gens
        self.class_aware = ([ClassAwareSampler(labels, method.class_aware, g) for g in gens]
                            if method.class_aware else None)
        if self.class_aware:
            self.size = class_aware_epoch_size(method.class_aware_reference, epoch_size,
                                               len(labels), batch_size,
                                               self.class_aware[0].cycle_size)

    def epoch(self, counts: torch.Tensor | None, hp: dict[str, torch.Tensor], epoch: int,
              epochs: int) -> torch.Tensor:
        if self.class_aware is not None:
            return torch.stack([s.epoch(self.size) for s in self.class_aware])
        if self.method.sampling is not None:
            probs = self.method.sampling(counts, hp, epoch, epochs, len(self.gens))
            return class_prob_epoch(self.gens, self.labels, probs)
        return instance_epoch(self.gens, len(self.labels))
