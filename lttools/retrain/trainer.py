"""Batched stage-2 training: every head of a plan (grid points x seeds) is trained at once on
the cached features, each with its own sampling stream. Validation is scored after every
epoch (selection and the per-epoch curves need it); the test set only where it is reported:
at each head's best validation epoch (its weights are kept) and at the last epoch.

Heads are ordered grid-major: head h = g * len(seeds) + s. Heads of one seed share their
sampling stream across grid points (common random numbers: grid points differ only by
their hyper-parameters).
"""
from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import torch
from tqdm.auto import tqdm

from lttools.data.longtail import FEW_BELOW, MANY_ABOVE
from lttools.errors import LTError
from lttools.metrics import LogitStats
from lttools.retrain import pieces as P
from lttools.retrain.heads import HEADS
from lttools.retrain.plan import Plan, resolve_auto
from lttools.retrain.sampling import EpochSampler


@dataclass
class FeatureData:
    """Everything stage 2 reads, as tensors on the training device."""
    train: torch.Tensor  # [V, N, D] view 0 clean, 1.. augmented
    train_labels: torch.Tensor
    val: torch.Tensor  # [T, N, D] T = 1, or 2 with the flipped view; N = 0: no validation
    val_labels: torch.Tensor
    test: torch.Tensor  # [T, N, D] as val
    test_labels: torch.Tensor
    class_counts: np.ndarray
    head_weight: torch.Tensor
    head_bias: torch.Tensor
    group_thresholds: tuple[int, int] = (MANY_ABOVE, FEW_BELOW)  # Many above, Few below


@dataclass
class History:
    """Per head and epoch (epoch 0 = the starting head): scalar metrics and per-class arrays.
    Test entries exist at each head's best validation epoch and at the last one (NaN at the
    others), unless the trainer was asked to score the test set every epoch."""
    plan: Plan
    scalars: dict[str, dict[str, torch.Tensor]]  # split -> metric -> [H, E+1]; no "val" when
    # the store has no validation split
    per_class: dict[str, dict[str, torch.Tensor]]  # split -> {acc, loma: [H, E+1, K], rel_*: bins}
    final_params: dict[str, torch.Tensor]
    class_counts: np.ndarray  # training counts, for reporting per-class results by frequency
    # test-set class ids [H, N] of every head: "selected" at its best validation epoch (the last
    # one without validation), "last" at the last epoch; "selected_epoch" [H] says which epoch
    predictions: dict[str, torch.Tensor] = dataclasses.field(default_factory=dict)


def head_seeds(plan: Plan) -> list[int]:
    return [s for _ in plan.grid for s in plan.seeds]


def hyper_tensors(plan: Plan, device: torch.device) -> dict[str, torch.Tensor]:
    """Per-head hyper-parameters, [H] each."""
    return {k: torch.tensor([g[k] for g in plan.grid for _ in plan.seeds], dtype=torch.float32,
                            device=device) for k in plan.grid[0]}


def cosine_lr(base: torch.Tensor, epoch: int, epochs: int) -> torch.Tensor:
    """Cosine annealing stepped per epoch, as torch's CosineAnnealingLR(T_max=epochs)."""
    return base * 0.5 * (1 + math.cos(math.pi * epoch / epochs))


class BatchedSGD:
    """SGD with momentum and L2 weight decay (torch.optim.SGD's update, in its order of
    rounding), hyper-parameters per head: g += wd w; buf = mu buf + g; w -= lr buf. In place:
    the gradients passed to `step` are overwritten, and nothing as large as a parameter is
    allocated after the first step. All parameters are updated by one call per operation
    (torch's _foreach_* ops: the same arithmetic per tensor, a fraction of the per-call cost
    that dominates a small step)."""

    def __init__(self, params: dict[str, torch.Tensor], momentum: torch.Tensor,
                 weight_decay: torch.Tensor):
        self.names = list(params)
        self.tensors = list(params.values())
        self.momentum = [_per_head(momentum, p) for p in self.tensors]
        self.weight_decay = [_per_head(weight_decay, p) for p in self.tensors]
        self.bufs: list[torch.Tensor] | None = None
        self._lr: tuple[dict[str, torch.Tensor], list[torch.Tensor]] | None = None

    @torch.no_grad()
    def step(self, grads: dict[str, torch.Tensor], lr: dict[str, torch.Tensor]) -> None:
        """lr: per parameter name, one learning rate per head [H]."""
        # a gradient with internal overlap (e.g. an expanded one) is not writable in place
        g = [grads[n].clone() if _has_internal_overlap(grads[n]) else grads[n] for n in self.names]
        torch._foreach_addcmul_(g, self.weight_decay, self.tensors)
        if self.bufs is None:
            self.bufs = [t.clone(memory_format=torch.contiguous_format) for t in g]
        else:
            torch._foreach_mul_(self.bufs, self.momentum)
            torch._foreach_add_(self.bufs, g)
        torch._foreach_addcmul_(self.tensors, self._per_head_lr(lr), self.bufs, value=-1)

    def _per_head_lr(self, lr: dict[str, torch.Tensor]) -> list[torch.Tensor]:
        if self._lr is None or self._lr[0] is not lr:  # the views made once per lr dict
            self._lr = (lr, [_per_head(lr[n], p) for n, p in zip(self.names, self.tensors)])
        return self._lr[1]


def _per_head(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
    """[H] -> [H, 1, ...] broadcasting against `like` [H, ...]."""
    return v.view(-1, *([1] * (like.dim() - 1)))


def _has_internal_overlap(t: torch.Tensor) -> bool:
    return any(stride == 0 and size > 1 for stride, size in zip(t.stride(), t.shape))


def method_loss(plan: Plan, params, frozen, x: torch.Tensor, y: torch.Tensor, hp,
                counts: torch.Tensor | None, class_weights: torch.Tensor | None) -> torch.Tensor:
    """The method's training objective per head [H] on features x [H, B, D], labels y [H, B]."""
    z = HEADS[plan.method.head].logits(params, frozen, x, hp)
    return logits_loss(plan, z, y, hp, counts, class_weights)


def logits_loss(plan: Plan, z: torch.Tensor, y: torch.Tensor, hp, counts: torch.Tensor | None,
                class_weights: torch.Tensor | None) -> torch.Tensor:
    """The objective per head [H] from the head's logits z [H, B, K]: training-time logit
    changes, per-sample loss, class-weighted mean."""
    method = plan.method
    if method.train_logits is not None:
        z = method.train_logits(z, y, hp, counts)
    per_sample = (method.loss or _cross_entropy)(z, y, hp, counts)
    if class_weights is None:
        return per_sample.mean(1)
    w = class_weights.gather(1, y)
    return (w * per_sample).sum(1) / w.sum(1)


def _cross_entropy(z, y, hp, counts):
    return P.cross_entropy(z, y)


def _cross_entropy_grad(z, y, hp, counts):
    return P.soft_target_grad(z, y)


def analytic_gradient(plan: Plan) -> bool:
    """Whether a step of this method needs no autograd: its head has a pullback, and its
    loss a gradient (CE's is built in), with no training-time logit change between them."""
    m = plan.method
    return (hasattr(HEADS[m.head], "forward") and m.train_logits is None
            and (m.loss is None or m.loss_grad is not None))


def logits_gradient(plan: Plan, z: torch.Tensor, y: torch.Tensor, hp, counts: torch.Tensor | None,
                    class_weights: torch.Tensor | None) -> torch.Tensor:
    """d/dz of the summed per-head objective (logits_loss), from the loss's own gradient:
    each sample's share of its head's (weighted) mean."""
    per_sample = (plan.method.loss_grad or _cross_entropy_grad)(z, y, hp, counts)
    if class_weights is None:
        return per_sample.div_(y.shape[1])
    w = class_weights.gather(1, y)
    return per_sample.mul_((w / w.sum(1, keepdim=True))[..., None])


def step_gradients(plan: Plan, params, frozen, x: torch.Tensor, y: torch.Tensor, hp,
                   counts: torch.Tensor | None,
                   class_weights: torch.Tensor | None) -> dict[str, torch.Tensor]:
    """Gradients of the summed per-head objective: the loss's gradient with respect to the
    logits (its own, else autograd's), then the head's pullback (heads without one: autograd
    through the head)."""
    head = HEADS[plan.method.head]
    if not hasattr(head, "forward"):
        loss = method_loss(plan, params, frozen, x, y, hp, counts, class_weights)
        return dict(zip(params, torch.autograd.grad(loss.sum(), list(params.values()))))
    with torch.no_grad():
        z, pullback = head.forward(params, frozen, x, hp)
        if analytic_gradient(plan):
            return pullback(logits_gradient(plan, z, y, hp, counts, class_weights))
    z.requires_grad_(True)
    loss = logits_loss(plan, z, y, hp, counts, class_weights)
    (gz,) = torch.autograd.grad(loss.sum(), z)
    with torch.no_grad():
        return pullback(gz)


def _prior(plan: Plan, data: FeatureData, device) -> torch.Tensor | None:
    if not plan.method.needs_prior:
        return None
    if data.class_counts is None or int(np.sum(data.class_counts)) == 0:
        raise LTError(f"method {plan.method.name!r} needs the class prior, but the features "
                      "carry no training class counts")
    return torch.as_tensor(data.class_counts, device=device)


def _predicting_head(plan: Plan, params, frozen, hp, counts):
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


def _split_logits(plan, params, frozen, views: torch.Tensor, hp, linear) -> torch.Tensor:
    """Logits averaged over the stored views (val / test: clean + flipped, as the paper
    evaluates). A head that predicts with one linear map (post-hoc transform applied) maps the
    views' mean feature once: the mean of linear logits is the logits of the mean."""
    if linear is not None:
        x = views[0].float() if len(views) == 1 else views.float().mean(0)
        return shared_affine(x, *linear)
    head = HEADS[plan.method.head]
    return torch.stack([head.logits(params, frozen, v.float(), hp) for v in views]).mean(0)


def _evaluate(plan, params, frozen, data: FeatureData, hp, counts, eval_rows: int,
              splits: tuple[str, ...] = ("val", "test"), predict: bool = False):
    """Scores of every head on `splits` (val skipped where the store has none), the logits
    computed `eval_rows` samples at a time and reduced to per-class statistics, so memory does
    not grow with the split; with `predict`, also each head's predicted class ids [H, N]."""
    out_scalars, out_pc, out_pred = {}, {}, {}
    heads = next(iter(hp.values())).shape[0]
    with torch.no_grad():
        linear = _predicting_head(plan, params, frozen, hp, counts)
        for split in splits:
            views, labels = getattr(data, split), getattr(data, f"{split}_labels")
            if not len(labels):
                continue
            k = data.head_weight.shape[0]
            stats = LogitStats((heads,), k, views.device)
            predicted = []
            for i in range(0, len(labels), eval_rows):
                z = _split_logits(plan, params, frozen, views[:, i:i + eval_rows], hp, linear)
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

    def update(self, epoch: int, val_bacc: torch.Tensor, params: dict[str, torch.Tensor]) -> None:
        if epoch < self.first:
            return
        better = val_bacc > self.score
        if better.any():
            self.score[better], self.epoch[better] = val_bacc[better].double(), epoch
            rows = better.to(next(iter(params.values())).device)
            for k, v in params.items():
                self.params[k][rows] = v.detach()[rows]


def _test_history(columns: int, at: dict[int, tuple], heads: int):
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


def _rows(values: dict[str, torch.Tensor], rows: list[int]) -> dict[str, torch.Tensor]:
    """Those heads' entries of per-head tensors (the tensors themselves for all heads)."""
    if rows == list(range(next(iter(values.values())).shape[0])):
        return values
    index = torch.tensor(rows, dtype=torch.long)
    return {k: v.detach()[index.to(v.device)] for k, v in values.items()}


def _learning_rates(plan: Plan, params, hp, epoch: int) -> dict[str, torch.Tensor]:
    """This epoch's cosine learning rate of every parameter, per head; a method's `lr_scale`
    multiplies some parameters' rate by one of its hyper-parameters."""
    lr = cosine_lr(hp["lr"], epoch, plan.epochs)
    return {name: lr * hp[plan.method.lr_scale[name]] if name in plan.method.lr_scale else lr
            for name in params}


def check_selection_possible(plan: Plan, data: FeatureData) -> None:
    """Without a validation split nothing can be selected: a grid would silently report its
    first point. Refused, with the reason."""
    if len(data.val_labels) == 0 and len(plan.grid) > 1:
        axes = ", ".join(f"methods.{plan.key}.{k} = {sorted({g[k] for g in plan.grid})}"
                         for k in plan.grid_keys)
        raise LTError(f"{axes} is a grid, but the feature store has no validation split "
                      "(data.val_per_class = 0), and choosing a grid point needs validation data "
                      "(never the test set). Give one value, or set data.val_per_class > 0.")


def memory_budget(device: torch.device, budget_gb: float | None = None) -> int:
    """Bytes the heads may use beyond the resident features: `budget_gb`, or on CUDA half of
    the free memory, elsewhere 2 GiB."""
    if budget_gb is not None:
        return int(budget_gb * 2 ** 30)
    if device.type == "cuda":
        free, _ = torch.cuda.mem_get_info(device)
        return free // 2
    return 2 * 2 ** 30


def head_bytes(plan: Plan, k: int, d: int) -> int:
    """What one head costs during training, roughly: its parameters with gradient, momentum
    and update (4 copies, float32), and a batch's logits with their gradients (4 copies); a
    post-hoc head (no training) its parameters once."""
    if plan.epochs == 0:
        return 4 * (k * d + 2 * k + d)
    return 4 * (4 * (k * d + 2 * k + d) + 4 * plan.batch_size * k)


def head_groups(plan: Plan, budget: int, k: int, d: int) -> list[Plan]:
    """The plan cut into sub-plans that fit `budget`: whole grid points (all their seeds)
    where they fit, else seeds of one grid point. Heads keep their order (grid-major) and each
    its own random stream, so the result equals training all heads at once."""
    per_group = max(1, budget // head_bytes(plan, k, d))
    if plan.num_heads <= per_group:
        return [plan]
    seeds = len(plan.seeds)
    if seeds <= per_group:
        step = per_group // seeds
        return [dataclasses.replace(plan, grid=plan.grid[g:g + step])
                for g in range(0, len(plan.grid), step)]
    return [dataclasses.replace(plan, grid=[point], seeds=plan.seeds[s:s + per_group])
            for point in plan.grid for s in range(0, seeds, per_group)]


def _merge(plan: Plan, parts: list[History]) -> History:
    """One History of all heads from the histories of consecutive head groups."""
    cat = lambda key: {s: {m: torch.cat([getattr(p, key)[s][m] for p in parts])  # noqa: E731
                           for m in getattr(parts[0], key)[s]} for s in getattr(parts[0], key)}
    params = {k: torch.cat([p.final_params[k] for p in parts]) for k in parts[0].final_params}
    predictions = {k: torch.cat([p.predictions[k] for p in parts]) for k in parts[0].predictions}
    return History(plan, cat("scalars"), cat("per_class"), params, parts[0].class_counts,
                   predictions)


def train_heads(plan: Plan, data: FeatureData, views: int = 0, device: str | torch.device = "cpu",
                quiet: bool = False, every_epoch: bool = True,
                memory_gb: float | None = None, test_every_epoch: bool = False) -> History:
    """Train every head of `plan`; `views` > 0 cycles epochs through augmented views 1..views.
    Heads are scored on validation after every epoch (`every_epoch`, needed for epoch
    selection) or, for benchmarks, only at the start and the end; on the test set at each
    head's selected and last epoch (`test_every_epoch`: after every epoch too, the results at
    those two epochs identical). The heads are trained in groups that fit `memory_gb` (see
    memory_budget); the features stay resident once for all groups."""
    dev = torch.device(device)
    if views > data.train.shape[0] - 1:
        raise LTError(f"retrain.views = {views} but the feature store holds "
                      f"{data.train.shape[0] - 1} augmented view(s); lower retrain.views or raise "
                      "features.views and re-extract")
    counts = _prior(plan, data, dev)
    plan = resolve_auto(plan, data.class_counts)
    check_selection_possible(plan, data)
    k, d = data.head_weight.shape
    budget = memory_budget(dev, memory_gb)
    groups = head_groups(plan, budget, k, d)
    # evaluation logits of a group, [views, heads, rows, K] float32, within a quarter budget
    # and, on a CPU, about 16 MiB a chunk: buffers of that size are reused by the allocator
    # instead of being mapped afresh (and page-faulted) for every chunk
    per_row = 4 * k * max(g.num_heads for g in groups) * (1 + max(data.val.shape[0],
                                                                  data.test.shape[0]))
    eval_rows = max(1, budget // 4 // per_row)
    if dev.type == "cpu":
        eval_rows = min(eval_rows, max(256, 2 ** 24 // per_row))
    parts = [_train_group(g, data, views, dev, quiet, every_epoch, counts, eval_rows,
                          test_every_epoch, within=len(g.grid) == len(plan.grid))
             for g in groups]
    return parts[0] if len(parts) == 1 else _merge(plan, parts)


def epoch_batches(x: torch.Tensor, y: torch.Tensor, idx: torch.Tensor, batch: int,
                  chunk_bytes: int = 32 * 2 ** 20) -> Iterator[tuple[torch.Tensor, torch.Tensor]]:
    """An epoch's batches, features [H, B, D] float32 and labels [H, B], from the draws
    idx [H, E] into x [N, D] and y [N]: the rows of many steps gathered at once (about
    `chunk_bytes` at a time), each step a view of them."""
    heads, draws = idx.shape
    steps = max(1, chunk_bytes // (4 * heads * batch * x.shape[1]))
    labels = y[idx]
    for start in range(0, draws, steps * batch):
        rows = idx[:, start:start + steps * batch]
        block = x.index_select(0, rows.flatten()).view(heads, rows.shape[1], -1).float()
        yield from zip(block.split(batch, 1), labels[:, start:start + rows.shape[1]].split(batch, 1))


def _train_group(plan: Plan, data: FeatureData, views: int, dev: torch.device, quiet: bool,
                 every_epoch: bool, counts: torch.Tensor | None, eval_rows: int,
                 test_every_epoch: bool, within: bool = True) -> History:
    method = plan.method
    hp = hyper_tensors(plan, dev)
    seeds = head_seeds(plan)
    sampler = EpochSampler(method, data.train_labels,
                           [torch.Generator().manual_seed(s) for s in seeds], plan.batch_size,
                           plan.options.get("epoch_size", "reference"))
    head = HEADS[method.head]
    frozen = {"w": data.head_weight.to(dev), "b": data.head_bias.to(dev)}
    init_gens = [torch.Generator().manual_seed(10_007 + s) for s in seeds]
    params = head.init(frozen["w"], frozen["b"], len(seeds), method.reinit, init_gens)
    for p in params.values():
        p.requires_grad_(True)
    opt = BatchedSGD(params, hp["momentum"], hp["weight_decay"])
    caps = None
    if method.constraint == "maxnorm":
        caps = P.maxnorm_caps(params["w"].detach(), hp["thresh"])
    y_all = data.train_labels.to(dev)
    history_sc: dict[str, dict[str, list]] = {}
    history_pc: dict[str, dict[str, list]] = {}
    best = BestWeights(params, plan.epochs) if len(data.val_labels) and every_epoch else None
    splits = ("val", "test") if test_every_epoch else ("val",)

    recorded = []  # the epochs scored, one history column each

    def record(epoch: int):
        recorded.append(epoch)
        sc, pc, _ = _evaluate(plan, params, frozen, data, hp, counts, eval_rows, splits)
        for split in sc:
            for k, v in sc[split].items():
                history_sc.setdefault(split, {}).setdefault(k, []).append(v)
            for k, v in pc[split].items():
                history_pc.setdefault(split, {}).setdefault(k, []).append(v)
        if best is not None:
            best.update(epoch, sc["val"]["bacc"], params)

    record(0)
    bar = tqdm(range(plan.epochs), desc=f"retrain {plan.key}", unit="epoch", disable=quiet)
    for epoch in bar:
        x_epoch = data.train[1 + epoch % views if views else 0].to(dev)
        lrs = _learning_rates(plan, params, hp, epoch)
        idx = sampler.epoch(counts, hp, epoch, plan.epochs).to(dev)
        cw = method.class_weights(counts, hp, epoch, plan.epochs) if method.class_weights else None
        for x, y in epoch_batches(x_epoch, y_all, idx, plan.batch_size):
            opt.step(step_gradients(plan, params, frozen, x, y, hp, counts, cw), lrs)
            if caps is not None and plan.options.get("maxnorm_every") == "step":
                P.apply_maxnorm(params["w"], caps)
        if caps is not None and plan.options.get("maxnorm_every") == "epoch":
            P.apply_maxnorm(params["w"], caps)
        if not all(torch.isfinite(p).all() for p in params.values()):
            raise LTError(f"methods.{plan.key} diverged at epoch {epoch + 1} (non-finite "
                          "weights); lower its lr")
        if every_epoch or epoch == plan.epochs - 1:
            record(epoch + 1)
    stack = lambda d: {s: {k: torch.stack(v, 1) for k, v in m.items()} for s, m in d.items()}
    scalars, per_class = stack(history_sc), stack(history_pc)
    columns = len(recorded)
    at_last, earlier = reported_heads(plan, best,
                                      None if best is None else scalars["val"]["bacc"][:, -1],
                                      recorded[-1], within and not test_every_epoch)
    n_test = len(data.test_labels)
    predictions = {"last": torch.full((plan.num_heads, n_test), -1, dtype=torch.long),
                   "selected": torch.full((plan.num_heads, n_test), -1, dtype=torch.long),
                   "selected_epoch": torch.full((plan.num_heads,), -1)}
    at = {}  # history column -> (test scalars, per-class, heads) of the heads scored there
    for rows, weights in ((at_last, params), (earlier, best.params if best else None)):
        if not rows:
            continue
        sc, pc, pred = _evaluate(plan, _rows(weights, rows), frozen, data, _rows(hp, rows), counts,
                                 eval_rows, ("test",), predict=True)
        epochs = [recorded[-1] if weights is params else int(best.epoch[h]) for h in rows]
        for i, (h, epoch) in enumerate(zip(rows, epochs)):
            if weights is params:
                predictions["last"][h] = pred["test"][i]
            if best is None or int(best.epoch[h]) == epoch:
                predictions["selected"][h] = pred["test"][i]
                predictions["selected_epoch"][h] = epoch
        for epoch in sorted(set(epochs)):
            local = [i for i, e in enumerate(epochs) if e == epoch]
            at[recorded.index(epoch)] = ({k: v[local] for k, v in sc["test"].items()},
                                         {k: v[local] for k, v in pc["test"].items()},
                                         [rows[i] for i in local])
    if not test_every_epoch:
        scalars["test"], per_class["test"] = _test_history(columns, at, plan.num_heads)
    return History(plan, scalars, per_class,
                   {k: v.detach().cpu() for k, v in params.items()},
                   np.asarray(data.class_counts if data.class_counts is not None else []),
                   predictions)
