"""Heads in groups that fit a memory budget: what one head costs, the plan cut into sub-plans
(whole grid points where they fit, else seeds), and the groups' histories merged back into one."""
from __future__ import annotations

import dataclasses

import torch

from lttools.retrain.plan import Plan
from lttools.retrain.records import History


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


def merge_histories(plan: Plan, parts: list[History]) -> History:
    """One History of all heads from the histories of consecutive head groups."""
    cat = lambda key: {s: {m: torch.cat([getattr(p, key)[s][m] for p in parts])  # noqa: E731
                           for m in getattr(parts[0], key)[s]} for s in getattr(parts[0], key)}
    params = {k: torch.cat([p.final_params[k] for p in parts]) for k in parts[0].final_params}
    predictions = {k: torch.cat([p.predictions[k] for p in parts]) for k in parts[0].predictions}
    return History(plan, cat("scalars"), cat("per_class"), params, parts[0].class_counts,
                   predictions)

