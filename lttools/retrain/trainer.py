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
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F
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
    """SGD with momentum and L2 weight decay (torch.optim.SGD's update), hyper-parameters per
    head: buf = mu buf + (g + wd w); w -= lr buf."""

    def __init__(self, params: dict[str, torch.Tensor], momentum: torch.Tensor,
                 weight_decay: torch.Tensor):
        self.params = params
        self.momentum, self.weight_decay = momentum, weight_decay
        self.bufs: dict[str, torch.Tensor] = {}

    @staticmethod
    def _per_head(v: torch.Tensor, like: torch.Tensor) -> torch.Tensor:
        return v.view(-1, *([1] * (like.dim() - 1)))

    @torch.no_grad()
    def step(self, grads: dict[str, torch.Tensor], lr: dict[str, torch.Tensor]) -> None:
        """lr: per parameter name, one learning rate per head [H]."""
        for name, p in self.params.items():
            g = grads[name] + self._per_head(self.weight_decay, p) * p
            if name in self.bufs:
                self.bufs[name].mul_(self._per_head(self.momentum, p)).add_(g)
            else:
                self.bufs[name] = g.clone()
            p.sub_(self._per_head(lr[name], p) * self.bufs[name])


def method_loss(plan: Plan, params, frozen, x: torch.Tensor, y: torch.Tensor, hp,
                counts: torch.Tensor | None, class_weights: torch.Tensor | None) -> torch.Tensor:
    """The method's training objective per head [H] on features x [H, B, D], labels y [H, B]:
    logits, training-time logit changes, per-sample loss, class-weighted mean."""
    method = plan.method
    z = HEADS[method.head].logits(params, frozen, x, hp)
    if method.train_logits is not None:
        z = method.train_logits(z, y, hp, counts)
    if method.loss is not None:
        per_sample = method.loss(z, y, hp, counts)
    else:
        per_sample = F.cross_entropy(z.flatten(0, 1), y.flatten(),
                                     reduction="none").view_as(y).to(z.dtype)
    if class_weights is None:
        return per_sample.mean(1)
    w = class_weights.gather(1, y)
    return (w * per_sample).sum(1) / w.sum(1)


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


def _split_logits(plan, params, frozen, views: torch.Tensor, hp, linear) -> torch.Tensor:
    """Logits averaged over the stored views (val / test: clean + flipped, as the paper
    evaluates). A head that predicts with one linear map (post-hoc transform applied) maps the
    views' mean feature once: the mean of linear logits is the logits of the mean."""
    if linear is not None:
        w, b = linear
        x = views[0].float() if len(views) == 1 else views.float().mean(0)
        return torch.matmul(x, w.transpose(-1, -2)) + b[:, None, :]
    head = HEADS[plan.method.head]
    return torch.stack([head.logits(params, frozen, v.float(), hp) for v in views]).mean(0)


def _evaluate(plan, params, frozen, data: FeatureData, hp, counts, eval_rows: int,
              splits: tuple[str, ...] = ("val", "test"), predict: bool = False):
    """Scores of every head on `splits` (val skipped where the store has none), the logits
    computed `eval_rows` samples at a time and reduced to per-class statistics, so memory does
    not grow with the split; with `predict`, also each head's predicted class ids [H, N]."""
    out_scalars, out_pc, out_pred = {}, {}, {}
    heads = plan.num_heads
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
    maps a column to (scalars, per-class) of all heads and the heads to keep there."""
    scalars, per_class = {}, {}
    for column, (sc, pc, rows) in at.items():
        for out, values in ((scalars, sc), (per_class, pc)):
            for k, v in values.items():
                if k not in out:
                    out[k] = torch.full((heads, columns, *v.shape[1:]), math.nan, dtype=v.dtype
                                        if v.is_floating_point() else torch.float64)
                out[k][rows, column] = v[rows].to(out[k].dtype)
    return scalars, per_class


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
    and update (4 copies, float32), and a batch's logits with their gradients (4 copies)."""
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
    eval_rows = max(1, budget // 4 // (4 * k * max(g.num_heads for g in groups)
                                       * (1 + max(data.val.shape[0], data.test.shape[0]))))
    parts = [_train_group(g, data, views, dev, quiet, every_epoch, counts, eval_rows,
                          test_every_epoch) for g in groups]
    return parts[0] if len(parts) == 1 else _merge(plan, parts)


def _train_group(plan: Plan, data: FeatureData, views: int, dev: torch.device, quiet: bool,
                 every_epoch: bool, counts: torch.Tensor | None, eval_rows: int,
                 test_every_epoch: bool) -> History:
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
        for s in range(0, idx.shape[1], plan.batch_size):
            ib = idx[:, s:s + plan.batch_size]
            loss = method_loss(plan, params, frozen, x_epoch[ib].float(), y_all[ib], hp, counts,
                               cw)
            grads = torch.autograd.grad(loss.sum(), list(params.values()))
            opt.step(dict(zip(params, grads)), lrs)
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
    last = _evaluate(plan, params, frozen, data, hp, counts, eval_rows, ("test",), predict=True)
    everyone = torch.arange(plan.num_heads)
    at = {columns - 1: (last[0]["test"], last[1]["test"], everyone)}
    predictions = {"last": last[2]["test"], "selected": last[2]["test"].clone(),
                   "selected_epoch": torch.full((plan.num_heads,), recorded[-1])}
    earlier = [] if best is None else [c for c in best.epoch.unique().tolist()
                                       if c != columns - 1]
    if earlier:  # heads whose best epoch is the last one are scored once, above
        chosen = _evaluate(plan, best.params, frozen, data, hp, counts, eval_rows, ("test",),
                           predict=True)
        for column in earlier:
            rows = torch.nonzero(best.epoch == column).flatten()
            at[column] = (chosen[0]["test"], chosen[1]["test"], rows)
            predictions["selected"][rows] = chosen[2]["test"][rows]
            predictions["selected_epoch"][rows] = column
    if not test_every_epoch:
        scalars["test"], per_class["test"] = _test_history(columns, at, plan.num_heads)
    return History(plan, scalars, per_class,
                   {k: v.detach().cpu() for k, v in params.items()},
                   np.asarray(data.class_counts if data.class_counts is not None else []),
                   predictions)
