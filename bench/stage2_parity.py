"""Does caching change the answer? Stage 2 trained the paper's way against lttools' cached
features, on the default pipeline's backbone, same methods, seeds and recipe.

- the paper's way: every epoch each training image is cropped and flipped afresh and pushed
  through the frozen backbone in model.train() mode (BatchNorm statistics keep moving); only
  the linear head is trained (SGD, cosine, from the stage-1 head); validation and test logits
  average each image and its flip, evaluated in eval mode with the moved statistics;
- cached: lttools' stage 2 on features extracted once in eval mode, with V stored augmented
  views (V = 0: the clean features every epoch).

Both select the epoch on validation balanced accuracy and report test balanced accuracy there
and at the last epoch, mean ± std over seeds, and the time of each.

    dvc repro extract_features            # the default backbone and prepared data
    python bench/stage2_parity.py [--methods ce los] [--views 0 2 8] [--seeds 0 1 2]
"""
from __future__ import annotations

import argparse
import copy
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from common import machine
from lttools.backbone.saved import load_backbone
from lttools.config import from_section
from lttools.data.augment import random_crop_flip
from lttools.data.prepared import read_splits
from lttools.features.extract import ExtractConfig, extract_to_store
from lttools.features.store import open_store
from lttools.metrics import accuracy_summary, mean_std
from lttools.retrain.objective import method_loss
from lttools.retrain.optimizer import cosine_lr
from lttools.retrain.plan import hyper_tensors, make_plan
from lttools.retrain.run import load_feature_data
from lttools.retrain.summary import summarize
from lttools.retrain.trainer import train_heads
from lttools.stage_cli import load_params


def _flip_averaged_logits(model, fc_w, fc_b, images: torch.Tensor, batch: int = 1000):
    model.eval()
    out = []
    with torch.no_grad():
        for i in range(0, len(images), batch):
            x = images[i:i + batch]
            f = (model.features(x), model.features(x.flip(3)))
            out.append(((f[0] @ fc_w.T + fc_b) + (f[1] @ fc_w.T + fc_b)) / 2)
    return torch.cat(out)


def paper_way(plan, splits, backbone_path, seed: int, pad: int) -> dict[str, float]:
    """One head, one seed, images through the backbone in train mode every epoch."""
    m = plan.method
    if m.head != "linear" or m.reinit or m.sampling or m.class_aware or m.constraint:
        raise SystemExit(f"{m.name}: the paper's way here covers methods that fine-tune the linear "
                         "head with instance-balanced sampling (e.g. ce, los, label_smoothing, "
                         "focal, la_loss, cb_reweight)")
    torch.manual_seed(seed)
    model = load_backbone(backbone_path, "cpu").model
    w = model.fc.weight.detach().clone().requires_grad_(True)
    b = model.fc.bias.detach().clone().requires_grad_(True)
    hp = hyper_tensors(plan, torch.device("cpu"))
    opt = torch.optim.SGD([w, b], lr=float(hp["lr"][0]), momentum=float(hp["momentum"][0]),
                          weight_decay=float(hp["weight_decay"][0]))
    x_train = torch.from_numpy(splits.images["train"])
    y_train = torch.from_numpy(splits.labels["train"])
    x_val, y_val = (torch.from_numpy(splits.images["val"]), torch.from_numpy(splits.labels["val"]))
    counts = splits.class_counts
    prior = torch.as_tensor(counts) if m.needs_prior else None
    gen = torch.Generator().manual_seed(seed)
    states, val_bacc = [], []
    for epoch in range(plan.epochs):
        for g in opt.param_groups:
            g["lr"] = float(cosine_lr(hp["lr"], epoch, plan.epochs)[0])
        cw = m.class_weights(prior, hp, epoch, plan.epochs) if m.class_weights else None
        model.train()  # as the paper's code: BatchNorm statistics move during stage 2
        perm = torch.randperm(len(y_train), generator=gen)
        for i in range(0, len(perm), plan.batch_size):
            idx = perm[i:i + plan.batch_size]
            if len(idx) < 2:
                continue
            with torch.no_grad():
                f = model.features(random_crop_flip(x_train[idx], pad, gen))
            loss = method_loss(plan, {"w": w[None], "b": b[None]}, {}, f[None], y_train[idx][None],
                               hp, prior, cw).sum()
            opt.zero_grad()
            loss.backward()
            opt.step()
        z = _flip_averaged_logits(model, w.detach(), b.detach(), x_val)
        val_bacc.append(float(accuracy_summary(z, y_val, counts)["bacc"]))
        states.append((copy.deepcopy(model.state_dict()), w.detach().clone(), b.detach().clone()))
    picked = int(np.argmax(val_bacc))  # first maximum, as lttools selects

    def test_bacc(epoch: int) -> float:
        state, ww, bb = states[epoch]
        model.load_state_dict(state)
        z = _flip_averaged_logits(model, ww, bb, torch.from_numpy(splits.images["test"]))
        return float(accuracy_summary(z, torch.from_numpy(splits.labels["test"]), counts)["bacc"])

    last = test_bacc(plan.epochs - 1)
    return {"selected": last if picked == plan.epochs - 1 else test_bacc(picked), "last": last}


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--data", default="data/prepared/dataset.h5")
    p.add_argument("--backbone", default="models/backbones/0.pt")
    p.add_argument("--params", default="params.yaml")
    p.add_argument("--methods", nargs="+", default=["ce", "los"])
    p.add_argument("--views", type=int, nargs="+", default=[0, 2, 8])
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--epochs", type=int, default=None, help="fewer epochs for a quick run")
    args = p.parse_args()
    print(machine())
    params = load_params(args.params)
    splits = read_splits(args.data)
    shared = {**params["retrain"], "seeds": args.seeds, "device": "cpu"}
    entries = {m: dict(params["methods"].get(m, {}), **({"epochs": args.epochs} if args.epochs
                                                          else {})) for m in args.methods}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        store_path = Path(tmp) / "features.h5"
        cfg = from_section(ExtractConfig, {**params["features"], "views": max(args.views)},
                           "features")
        t0 = time.perf_counter()
        extract_to_store(load_backbone(args.backbone, "cpu"), splits, args.backbone, store_path,
                         cfg, quiet=True)
        print(f"extraction with {max(args.views)} augmented views: "
              f"{time.perf_counter() - t0:.1f} s (once, shared by every cached run)")
        store = open_store(store_path)
        for key in args.methods:
            plan = make_plan(key, entries[key], {**shared, "seeds": [0]})
            t0 = time.perf_counter()
            runs = [paper_way(make_plan(key, entries[key], {**shared, "seeds": [s]}), splits,
                              args.backbone, s, cfg.crop_pad) for s in args.seeds]
            rows.append((key, "paper's way (images, train-mode BN)",
                         [r["selected"] for r in runs], [r["last"] for r in runs],
                         time.perf_counter() - t0))
            for views in args.views:
                plan = make_plan(key, entries[key], shared)
                data = load_feature_data(store, views, bool(shared.get("flip_test", True)),
                                         torch.device("cpu"))
                t0 = time.perf_counter()
                metrics, _ = summarize(train_heads(plan, data, views=views, quiet=True))
                seconds = time.perf_counter() - t0
                rows.append((key, f"cached, V = {views}", [metrics["test_bacc_mean"]],
                             [metrics["last_test_bacc_mean"]], seconds,
                             (metrics["test_bacc_std"], metrics["last_test_bacc_std"])))
    print(f"\n{len(splits.labels['train'])} training images, {plan.epochs} epochs, seeds "
          f"{args.seeds}; test balanced accuracy (%), mean ± std over seeds")
    print("| method | how | selected on validation | last epoch | seconds (all seeds) |")
    print("|---|---|---|---|---|")
    for key, how, sel, last, seconds, *std in rows:
        (ms, ss), (ml, sl) = mean_std(sel), mean_std(last)
        if std:
            ss, sl = std[0]
        print(f"| {key} | {how} | {ms:.2f} ± {ss:.2f} | {ml:.2f} ± {sl:.2f} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
