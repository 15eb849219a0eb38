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

import numpy as np
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


class _Cycles:
    """Lists each visited in shuffled passes (reshuffled each time it is used up, the first
    take shuffling), held flat in numpy (its per-call cost is a fraction of torch's at these
    sizes) so that the takes from all lists in one call are one gather. Only a list whose take
    runs past its end draws from the generator, lists in order: the draws one such cycle per
    list, taken list by list, would make."""

    def __init__(self, lists: list[torch.Tensor], generator: torch.Generator):
        self.lists, self.gen = [x.numpy() for x in lists], generator
        self.lengths = np.array([len(x) for x in lists])
        self.offsets = np.cumsum(self.lengths) - self.lengths
        self.order = np.concatenate(self.lists)  # each list's current shuffle, at its offset
        self.pos = self.lengths.copy()  # the first take shuffles

    def take(self, need: np.ndarray) -> np.ndarray:
        """The next need[c] items of every list c, concatenated in list order."""
        out = np.empty(int(need.sum()), dtype=self.order.dtype)
        dest = np.cumsum(need) - need
        runs_past = self.pos + need > self.lengths
        plain = (need > 0) & ~runs_past
        n = need[plain]
        within = np.arange(int(n.sum())) - np.repeat(np.cumsum(n) - n, n)
        out[np.repeat(dest[plain], n) + within] = self.order[
            np.repeat((self.offsets + self.pos)[plain], n) + within]
        self.pos[plain] += n
        for c in np.flatnonzero(runs_past):
            out[dest[c]:dest[c] + need[c]] = self._take_across(c, int(need[c]))
        return out

    def _take_across(self, c: int, n: int) -> np.ndarray:
        """List c's next n items, reshuffling it each time it is used up."""
        items, pos = self.lists[c], int(self.pos[c])
        length, offset = len(items), int(self.offsets[c])
        current, pieces = self.order[offset:offset + length], []
        while n > 0:
            if pos == length:
                current, pos = items[torch.randperm(length, generator=self.gen).numpy()], 0
            k = min(n, length - pos)
            pieces.append(current[pos:pos + k])
            pos, n = pos + k, n - k
        taken = np.concatenate(pieces)  # before the write below: pieces may view the old order
        self.order[offset:offset + length] = current
        self.pos[c] = pos
        return taken


class ClassAwareSampler:
    """One head's class-aware stream (see the module docstring)."""

    def __init__(self, labels: torch.Tensor, per_visit: int, generator: torch.Generator):
        lab = labels.cpu()
        present = torch.unique(lab)
        self.per_visit = per_visit
        self.classes = _Cycles([torch.arange(len(present))], generator)
        self.members = _Cycles([torch.nonzero(lab == c).flatten() for c in present], generator)
        self.cycle_size = int(self.members.lengths.max()) * len(present)

    def epoch(self, size: int) -> torch.Tensor:
        """The next `size` samples of the stream (whole visits drawn, as the reference's
        generator draws a visit's samples at once): class c's samples fill its visits in
        order, the classes taking theirs in class order."""
        visits = math.ceil(size / self.per_visit)
        order = self.classes.take(np.array([visits]))
        need = np.bincount(order, minlength=len(self.members.lists)) * self.per_visit
        out = np.empty((visits, self.per_visit), dtype=np.int64)
        out[np.argsort(order, kind="stable")] = self.members.take(need).reshape(-1, self.per_visit)
        return torch.from_numpy(out.reshape(-1)[:size])


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
