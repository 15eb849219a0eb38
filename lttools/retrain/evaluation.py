"""Scoring heads on a split and keeping what selection needs: every head's per-class statistics
from logits computed a chunk at a time, each head's best-validation weights, and which heads'
test scores selection can report."""
from __future__ import annotations

import math

import torch

from lttools.metrics import LogitStats
from lttools.retrain.heads import HEADS
from lttools.retrain.plan import Plan
from lttools.retrain.records import FeatureData


def predicting_head(plan: Plan, params, frozen, hp, counts):
    """The linear head (W [H, K, D], b [H, K]) that predicts, post-hoc transform applied;
    None for heads that are not one linear map (cosine, DisAlign)."""
    linear = HEADS[plan.method.head].linear(params, frozen)
    if linear is None or plan.method.posthoc is None:
        return linear
    return plan.method.posthoc(*linear, hp, counts, plan.options)


def _weight_norm_ratio(w: torch.Tensor) -> torch.Tensor:
    """Largest over smallest class-weight row norm of each head, [H, K, D] -> [H]."""
    norms = w.detach().norm(dim=-1).double().cpu()
    return norms.max(-1).values / norms.min(-1).values.clamp_min(1e-12)


def shared_affine(x: torch.Tensor, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """x [N, D] through every head's W [H, K, D], b [H, K] -> [H, N, K]: one fused product
    per head into the output (broadcasting x over the heads would copy it H times)."""
    out = x.new_empty(w.shape[0], x.shape[0], w.shape[1])
    for h in range(w.shape[0]):
        torch.addmm(b[h], x, w[h].T, out=out[h])
    return out


def split_logits(plan, params, frozen, views: torch.Tensor, hp, linear) -> torch.Tensor:
    """Logits averaged over the stored views (val / test: clean + flipped, as the paper
    evaluates). A head that predicts with one linear map (post-hoc transform applied) maps the
    views' mean feature once: the mean of linear logits is the logits of the mean."""
    if linear is not None:
        x = views[0].float() if len(views) == 1 else views.float().mean(0)
        return shared_affine(x, *linear)
    head = HEADS[plan.method.head]
    return torch.stack([head.logits(params, frozen, v.float(), hp) for v in views]).mean(0)


def evaluate(plan, params, frozen, data: FeatureData, hp, counts, eval_rows: int,
              splits: tuple[str, ...] = ("val", "test"), predict: bool = False):
    """Scores of every head on `splits` (val skipped where the store has none), the logits
    computed `eval_rows` samples at a time and reduced to per-class statistics, so memory does
    not grow with the split; with `predict`, also each head's predicted class ids [H, N]."""
    out_scalars, out_pc, out_pred = {}, {}, {}
    heads = next(iter(hp.values())).shape[0]
    with torch.no_grad():
        linear = predicting_head(plan, params, frozen, hp, counts)
        for split in splits:
            views, labels = getattr(data, split), getattr(data, f"{split}_labels")
            if not len(labels):
                continue
            k = data.head_weight.shape[0]
            stats = LogitStats((heads,), k, views.device)
            predicted = []
            for i in range(0, len(labels), eval_rows):
                z = split_logits(plan, params, frozen, views[:, i:i + eval_rows], hp, linear)
                stats.update(z, labels[i:i + eval_rows])
                if predict:
                    predicted.append(z.argmax(-1).cpu())
            if predict:
                out_pred[split] = torch.cat(predicted, 1)
            sc = {**stats.summary(data.class_counts, *data.group_thresholds),
                  **stats.diagnostics()}
            out_scalars[split] = {m: v.cpu() for m, v in sc.items()}
            rel = stats.reliability()
            out_pc[split] = {"acc": 100 * stats.per_class_accuracy().cpu(),
                             "loma": stats.loma().cpu(), "rel_count": rel["count"].cpu(),
                             "rel_acc": rel["acc"].cpu(), "rel_conf": rel["conf"].cpu()}
    w = linear[0] if linear is not None else params.get("w")  # cosine head: its raw rows
    if w is not None and "test" in out_scalars:
        out_scalars["test"]["wnorm_ratio"] = _weight_norm_ratio(w)
    return out_scalars, out_pc, out_pred


class BestWeights:
    """Each head's weights at its best validation balanced accuracy so far (the earliest
    epoch of the maximum, as selection picks it); epoch 0 competes only without training."""

    def __init__(self, params: dict[str, torch.Tensor], epochs: int):
        self.first = 1 if epochs > 0 else 0
        heads = next(iter(params.values())).shape[0]
        self.score = torch.full((heads,), -math.inf, dtype=torch.float64)
        self.epoch = torch.full((heads,), epochs, dtype=torch.long)
        self.params = {k: v.detach().clone() for k, v in params.items()}

    def rows(self, block: slice) -> "BestWeights":
        """A view of some heads' scores and epochs (not their weights)."""
        view = object.__new__(BestWeights)
        view.first, view.score, view.epoch = self.first, self.score[block], self.epoch[block]
        view.params = {}
        return view

    def update(self, epoch: int, val_bacc: torch.Tensor, params: dict[str, torch.Tensor]) -> None:
        if epoch < self.first:
            return
        better = val_bacc > self.score
        if better.any():
            self.score[better], self.epoch[better] = val_bacc[better].double(), epoch
            rows = better.to(next(iter(params.values())).device)
            for k, v in params.items():
                self.params[k][rows] = v.detach()[rows]


def test_history(columns: int, at: dict[int, tuple], heads: int):
    """Test scalars and per-class arrays [H, columns, ...], NaN except where evaluated: `at`
    maps a column to (scalars, per-class) of the heads `rows` evaluated there, and those rows."""
    scalars, per_class = {}, {}
    for column, (sc, pc, rows) in at.items():
        for out, values in ((scalars, sc), (per_class, pc)):
            for k, v in values.items():
                if k not in out:
                    out[k] = torch.full((heads, columns, *v.shape[1:]), math.nan, dtype=v.dtype
                                        if v.is_floating_point() else torch.float64)
                out[k][rows, column] = v.to(out[k].dtype)
    return scalars, per_class


def reported_heads(plan: Plan, best: "BestWeights | None", last_val_bacc: torch.Tensor | None,
                   last: int, within: bool) -> tuple[list[int], list[int]]:
    """The heads whose test scores selection can report (summary.select's rule), as (scored at
    the last epoch, scored with their best-validation weights at an earlier epoch): per seed,
    the grid point best on validation over all epochs (the first of equals) and the one best
    at the last epoch. Unless `within` (this group holds every grid point of its seeds), the
    choice spans other groups: every head."""
    heads = range(plan.num_heads)
    if best is None:
        return list(heads), []
    if not within:
        return list(heads), [h for h in heads if int(best.epoch[h]) != last]
    at_last, earlier, seeds = set(), set(), len(plan.seeds)
    for s in range(seeds):
        same_seed = range(s, plan.num_heads, seeds)
        chosen = max(same_seed, key=lambda h: (float(best.score[h]), -h))
        at_last.add(max(same_seed, key=lambda h: (float(last_val_bacc[h]), -h)))
        (at_last if int(best.epoch[chosen]) == last else earlier).add(chosen)
    return sorted(at_last), sorted(earlier)


def head_rows(values: dict[str, torch.Tensor], rows: list[int]) -> dict[str, torch.Tensor]:
    """Those heads' entries of per-head tensors (the tensors themselves for all heads)."""
    if rows == list(range(next(iter(values.values())).shape[0])):
        return values
    index = torch.tensor(rows, dtype=torch.long)
    return {k: v.detach()[index.to(v.device)] for k, v in values.items()}

