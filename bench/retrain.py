"""Stage-2 speed: the same heads trained as one batched tensor program vs one at a time
with nn.Linear + torch.optim.SGD (the reference path), measured in one run; then every
registered method x 3 seeds through the real stage path (per-epoch evaluation included), on
one backbone's features, on 3 backbone replicates' as one batched program (the retrain stage's
path), and on the 3 one after another (the reference for the batched).

    python bench/retrain.py                 # CIFAR-100-LT-sized 64-d features, CPU
    python bench/retrain.py --device cuda --dim 512
    python bench/retrain.py --preset imagenet_lt [--device cuda]   # at scale (bench/scale.py)
    python bench/retrain.py --preset inat2018 --device cuda --feature-dtype bfloat16
"""
from __future__ import annotations

import argparse

import numpy as np
import torch

from common import lt_features, machine, timed
from lttools.retrain.plan import make_plan
from lttools.retrain.reference import train_one_head
from lttools.retrain.registry import all_methods
from lttools.retrain.trainer import train_heads, train_replicates


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--device", default="cpu")
    p.add_argument("--dim", type=int, default=64)
    p.add_argument("--grid", type=int, default=4, help="LOS eps grid points")
    p.add_argument("--seeds", type=int, default=3)
    p.add_argument("--epochs", type=int, default=None,
                   help="epochs of every method (default: 20 here; with --preset, each "
                        "method's own on CUDA, 1 on a CPU)")
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--skip-all-methods", action="store_true")
    p.add_argument("--backbones", type=int, default=3,
                   help="backbone replicates in the all-methods part (other features each)")
    p.add_argument("--preset", choices=("imagenet_lt", "inat2018"),
                   help="all methods at ImageNet-LT / iNaturalist 2018 size instead")
    p.add_argument("--rows", type=int, default=None,
                   help="--preset: training rows (default: all on CUDA, 20,000 on CPU)")
    p.add_argument("--feature-dtype", default="float32", choices=("float32", "bfloat16", "float16"))
    p.add_argument("--memory-gb", type=float, default=None)
    p.add_argument("--methods", nargs="*", default=None,
                   help="--preset: only these methods (default: every registered one)")
    args = p.parse_args()
    print(machine())
    if args.preset:
        from scale import run
        cuda = args.device.startswith("cuda")
        run(args.preset, args.device, args.seeds, args.epochs or (None if cuda else 1),
            args.rows or (None if cuda else 20_000), args.feature_dtype, args.memory_gb,
            args.methods)
        return
    args.epochs = args.epochs or 20
    data = lt_features(d=args.dim, device=args.device)
    n, d = data.train.shape[1:]
    print(f"features: {n} x {d}, {data.head_weight.shape[0]} classes; "
          f"{args.epochs} epochs, batch {args.batch_size}")

    eps = [round(0.9 + 0.09 * i / max(args.grid - 1, 1), 4) for i in range(args.grid)]
    shared = {"seeds": list(range(args.seeds)), "epochs": args.epochs,
              "batch_size": args.batch_size, "lr": 5e-4}
    plan = make_plan("los", {"eps": eps}, shared)
    train_heads(make_plan("los", {"eps": eps[:1], "epochs": 1}, shared), data,
                device=args.device, quiet=True, every_epoch=False)  # warm-up
    t_batched, hist = timed(train_heads, plan, data, device=args.device, quiet=True,
                            every_epoch=False)

    def one_at_a_time():
        return [train_one_head(plan, data, g, s) for g in range(len(plan.grid))
                for s in plan.seeds]

    t_ref, heads = timed(one_at_a_time) if args.device == "cpu" else (float("nan"), None)
    if heads is not None:
        gap = max(float((hist.final_params["w"][i] - h.weight.detach()).abs().max())
                  for i, h in enumerate(heads))
        print(f"max |w_batched - w_alone| over heads: {gap:.2e}")
    print(f"{plan.num_heads} heads (LOS eps {eps} x {args.seeds} seeds)")
    print(f"  one at a time (nn.Linear + torch.optim.SGD): {t_ref:.2f} s")
    print(f"  batched:                                     {t_batched:.2f} s")
    print(f"ratio: {t_ref / t_batched:.2f}")

    if args.skip_all_methods:
        return
    replicates = [data] + [lt_features(d=args.dim, device=args.device, seed=b)
                           for b in range(1, args.backbones)]
    totals = np.zeros(3)
    b = args.backbones
    print(f"\nall methods x {args.seeds} seeds, registry defaults, as the retrain stage runs "
          "them (validation every epoch, test where reported), seconds: one backbone; "
          f"{b} backbones batched (the stage's path); {b} backbones one after another")
    for name in sorted(all_methods()):
        plan = make_plan(name, {}, {"seeds": list(range(args.seeds))})
        t = [timed(train_heads, plan, data, device=args.device, quiet=True)[0],
             timed(train_replicates, plan, replicates, device=args.device, quiet=True)[0],
             timed(lambda: [train_heads(plan, r, device=args.device, quiet=True)
                            for r in replicates])[0]]
        totals += t
        print(f"  {name:<22} {plan.num_heads:>3} heads {plan.epochs:>3} epochs "
              + " ".join(f"{x:7.2f}" for x in t))
    print(f"all {len(all_methods())} methods: {totals[0]:.1f} s on one backbone; {b} backbones: "
          f"{totals[1]:.1f} s batched, {totals[2]:.1f} s one after another")
    print(f"ratio, {b} backbones batched / one backbone: {totals[1] / totals[0]:.2f} "
          f"(one after another / batched: {totals[2] / totals[1]:.2f})")

if __name__ == "__main__":
    torch.manual_seed(0)
    main()
