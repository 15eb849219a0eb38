"""The stage-2 epoch loop: every head of a plan (grid points x seeds) trained at once on the
cached features, each with its own sampling stream. Validation is scored after every epoch
(selection and the per-epoch curves need it); the test set only where it is reported: at each
head's best validation epoch (its weights are kept) and at the last epoch.

Heads are ordered grid-major: head h = g * len(seeds) + s. Heads of one seed share their
sampling stream across grid points (common random numbers: grid points differ only by
their hyper-parameters).
"""
from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import numpy as np
import torch
from tqdm.auto import tqdm

from lttools.errors import LTError
from lttools.retrain import pieces as P
from lttools.retrain.evaluation import BestWeights, evaluate, head_rows, reported_heads, test_history
from lttools.retrain.grouping import head_groups, memory_budget, merge_histories
from lttools.retrain.heads import HEADS
from lttools.retrain.objective import step_gradients
from lttools.retrain.optimizer import BatchedSGD, learning_rates
from lttools.retrain.plan import Plan, head_seeds, hyper_tensors, resolve_auto
from lttools.retrain.records import FeatureData, History
from lttools.retrain.sampling import EpochSampler


def class_prior(plan: Plan, data: FeatureData, device) -> torch.Tensor | None:
    if not plan.method.needs_prior:
        return None
    if data.class_counts is None or int(np.sum(data.class_counts)) == 0:
        raise LTError(f"method {plan.method.name!r} needs the class prior, but the features "
                      "carry no training class counts")
    return torch.as_tensor(data.class_counts, device=device)


def check_selection_possible(plan: Plan, data: FeatureData) -> None:
    """Without a validation split nothing can be selected: a grid would silently report its
    first point. Refused, with the reason."""
    if len(data.val_labels) == 0 and len(plan.grid) > 1:
        axes = ", ".join(f"methods.{plan.key}.{k} = {sorted({g[k] for g in plan.grid})}"
                         for k in plan.grid_keys)
        raise LTError(f"{axes} is a grid, but the feature store has no validation split "
                      "(data.val_per_class = 0), and choosing a grid point needs validation data "
                      "(never the test set). Give one value, or set data.val_per_class > 0.")


def check_views(views: int, data: FeatureData) -> None:
    if views > data.train.shape[0] - 1:
        raise LTError(f"retrain.views = {views} but the feature store holds "
                      f"{data.train.shape[0] - 1} augmented view(s); lower retrain.views or raise "
                      "features.views and re-extract")


def evaluation_rows(budget: int, k: int, heads: int, data: FeatureData,
                    dev: torch.device) -> int:
    """Rows of a split scored at once: the evaluation logits of `heads` heads, [views, heads,
    rows, K] float32, within a quarter budget and, on a CPU, about 16 MiB a chunk: buffers of
    that size are reused by the allocator instead of being mapped afresh (and page-faulted) for
    every chunk."""
    per_row = 4 * k * heads * (1 + max(data.val.shape[0], data.test.shape[0]))
    rows = max(1, budget // 4 // per_row)
    return min(rows, max(256, 2 ** 24 // per_row)) if dev.type == "cpu" else rows


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
    check_views(views, data)
    counts = class_prior(plan, data, dev)
    plan = resolve_auto(plan, data.class_counts)
    check_selection_possible(plan, data)
    k, d = data.head_weight.shape
    budget = memory_budget(dev, memory_gb)
    groups = head_groups(plan, budget, k, d)
    eval_rows = evaluation_rows(budget, k, max(g.num_heads for g in groups), data, dev)
    parts = [_train_group(g, data, views, dev, quiet, every_epoch, counts, eval_rows,
                          test_every_epoch, within=len(g.grid) == len(plan.grid))
             for g in groups]
    return parts[0] if len(parts) == 1 else merge_histories(plan, parts)


def train_replicates(plan: Plan, replicates: list[FeatureData], views: int = 0,
                     device: str | torch.device = "cpu", quiet: bool = False,
                     memory_gb: float | None = None) -> list[History]:
    """`plan` on every backbone replicate's features (the same training images, labels and
    sampling streams; each its own features and stage-1 head), one History each, as
    train_heads on each alone gives. Where the heads of all replicates fit the memory budget
    together they train as one batched program (one step updates every replicate's heads);
    otherwise one replicate after another."""
    dev = torch.device(device)
    first = replicates[0]
    if len(replicates) == 1:
        return [train_heads(plan, first, views, dev, quiet, memory_gb=memory_gb)]
    for data in replicates:
        check_views(views, data)
        if not torch.equal(data.train_labels, first.train_labels):
            raise LTError("the backbone replicates' feature stores hold other training images "
                          "(labels differ); re-run `dvc repro` so that they read the same data")
    counts = class_prior(plan, first, dev)
    plan = resolve_auto(plan, first.class_counts)
    check_selection_possible(plan, first)
    k, d = first.head_weight.shape
    budget = memory_budget(dev, memory_gb)
    together = dataclasses.replace(plan, seeds=plan.seeds * len(replicates))
    if len(head_groups(together, budget, k, d)) > 1:
        return [train_heads(plan, r, views, dev, quiet, memory_gb=memory_gb) for r in replicates]
    eval_rows = evaluation_rows(budget, k, plan.num_heads, first, dev)
    return _train_group(plan, replicates, views, dev, quiet, True, counts, eval_rows, False)


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


def _train_group(plan: Plan, data: FeatureData | list[FeatureData], views: int,
                 dev: torch.device, quiet: bool, every_epoch: bool,
                 counts: torch.Tensor | None, eval_rows: int, test_every_epoch: bool,
                 within: bool = True) -> History | list[History]:
    """One group of heads on one feature set, or (a list) the plan's heads on each backbone
    replicate's features at once: replicate-major, replicate r's heads r * H .. (r + 1) * H - 1
    laid out as one replicate's, each sampling the stream of its seed. A list gives one
    History per replicate."""
    reps = data if isinstance(data, list) else [data]
    blocks, per = len(reps), plan.num_heads
    method = plan.method
    hp = {k: v.repeat(blocks) for k, v in hyper_tensors(plan, dev).items()}
    seeds = head_seeds(plan) * blocks
    sampler = EpochSampler(method, reps[0].train_labels,
                           [torch.Generator().manual_seed(s) for s in seeds], plan.batch_size,
                           plan.options.get("epoch_size", "reference"))
    head = HEADS[method.head]
    frozens = [{"w": r.head_weight.to(dev), "b": r.head_bias.to(dev)} for r in reps]
    init_gens = [torch.Generator().manual_seed(10_007 + s) for s in seeds]
    parts = [head.init(f["w"], f["b"], per, method.reinit, init_gens[i * per:(i + 1) * per])
             for i, f in enumerate(frozens)]
    params = parts[0] if blocks == 1 else {k: torch.cat([p[k] for p in parts]) for k in parts[0]}
    # training reads the stage-1 head per head ([H, K, D]) where the replicates differ
    frozen = frozens[0] if blocks == 1 else {
        k: torch.cat([f[k].expand(per, *f[k].shape) for f in frozens]) for k in frozens[0]}
    for p in params.values():
        p.requires_grad_(True)
    opt = BatchedSGD(params, hp["momentum"], hp["weight_decay"])
    caps = None
    if method.constraint == "maxnorm":
        caps = P.maxnorm_caps(params["w"].detach(), hp["thresh"])
    rows_each = len(reps[0].train_labels)
    y_all = reps[0].train_labels.to(dev).repeat(blocks)
    offsets = (torch.arange(len(seeds), device=dev) // per * rows_each)[:, None]
    history_sc: dict[str, dict[str, list]] = {}
    history_pc: dict[str, dict[str, list]] = {}
    best = BestWeights(params, plan.epochs) if len(reps[0].val_labels) and every_epoch else None
    splits = ("val", "test") if test_every_epoch else ("val",)

    recorded = []  # the epochs scored, one history column each

    def record(epoch: int):
        recorded.append(epoch)
        sc, pc, _ = _evaluate_blocks(plan, params, frozens, reps, hp, counts, eval_rows, splits)
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
        view = 1 + epoch % views if views else 0
        x_epoch = reps[0].train[view].to(dev) if blocks == 1 else \
            torch.cat([r.train[view].to(dev) for r in reps])
        lrs = learning_rates(plan, params, hp, epoch)
        idx = sampler.epoch(counts, hp, epoch, plan.epochs).to(dev)
        if blocks > 1:
            idx = idx + offsets  # each replicate's heads read its own rows
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
    at_last, earlier = [], []
    for b in range(blocks):  # selection is per replicate: its heads' rows, offset
        block = slice(b * per, (b + 1) * per)
        last, before = reported_heads(
            plan, None if best is None else best.rows(block),
            None if best is None else scalars["val"]["bacc"][block, -1], recorded[-1],
            within and not test_every_epoch)
        at_last += [b * per + h for h in last]
        earlier += [b * per + h for h in before]
    n_test = len(reps[0].test_labels)
    predictions = {"last": torch.full((len(seeds), n_test), -1, dtype=torch.long),
                   "selected": torch.full((len(seeds), n_test), -1, dtype=torch.long),
                   "selected_epoch": torch.full((len(seeds),), -1)}
    at = {}  # history column -> (test scalars, per-class, heads) of the heads scored there
    for rows, weights in ((at_last, params), (earlier, best.params if best else None)):
        if not rows:
            continue
        sc, pc, pred = _evaluate_blocks(plan, weights, frozens, reps, hp, counts, eval_rows,
                                        ("test",), predict=True, rows=rows)
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
        scalars["test"], per_class["test"] = test_history(columns, at, len(seeds))
    final = {k: v.detach().cpu() for k, v in params.items()}
    histories = [History(plan, {s: {k: v[b * per:(b + 1) * per] for k, v in m.items()}
                                for s, m in scalars.items()},
                         {s: {k: v[b * per:(b + 1) * per] for k, v in m.items()}
                          for s, m in per_class.items()},
                         {k: v[b * per:(b + 1) * per] for k, v in final.items()},
                         np.asarray(r.class_counts if r.class_counts is not None else []),
                         {k: v[b * per:(b + 1) * per] for k, v in predictions.items()})
                 for b, r in enumerate(reps)]
    return histories if isinstance(data, list) else histories[0]


def _evaluate_blocks(plan: Plan, params, frozens: list, reps: list[FeatureData], hp, counts,
                     eval_rows: int, splits: tuple[str, ...], predict: bool = False,
                     rows: list[int] | None = None):
    """evaluate() of the heads `rows` (all when None, ascending), each on its own replicate's
    features and stage-1 head, the results in the order of `rows`."""
    if len(reps) == 1:
        if rows is None:
            return evaluate(plan, params, frozens[0], reps[0], hp, counts, eval_rows, splits,
                            predict)
        return evaluate(plan, head_rows(params, rows), frozens[0], reps[0], head_rows(hp, rows),
                        counts, eval_rows, splits, predict)
    per = plan.num_heads
    rows = list(range(per * len(reps))) if rows is None else rows
    parts = []
    for b, (frozen, data) in enumerate(zip(frozens, reps)):
        mine = [h for h in rows if h // per == b]
        if mine:
            parts.append(evaluate(plan, head_rows(params, mine), frozen, data,
                                  head_rows(hp, mine), counts, eval_rows, splits, predict))
    cat = lambda i: {s: {k: torch.cat([p[i][s][k] for p in parts]) for k in parts[0][i][s]}  # noqa: E731
                     for s in parts[0][i]}
    return cat(0), cat(1), {s: torch.cat([p[2][s] for p in parts]) for s in parts[0][2]}
