"""Stage `train_backbone@<seed>`: stage-1 CE training of one backbone replicate; resumes from
its checkpoint after a crash."""
import _this_repo  # noqa: F401  (this repository's lttools, imported first)
import contextlib
import dataclasses
from pathlib import Path

from lttools.atomic import save_torch
from lttools.backbone.config import BackboneConfig
from lttools.backbone.distributed import launched_rank
from lttools.backbone.evaluate import evaluate_images
from lttools.backbone.saved import backbone_payload
from lttools.backbone.train import train_backbone
from lttools.backbone.training_log import training_log
from lttools.data.prepared import read_splits
from lttools.errors import LTError
from lttools.provenance import sha256_file
from lttools.replicates import backbone_path, checkpoint_path, curves_dir, replicate_seeds
from lttools.stage_cli import load_params, parser, run, section


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--data", default="data/prepared/dataset.h5")
    p.add_argument("--seed", type=int, default=0,
                   help="the replicate: its training seed, one of replicates.seeds")
    p.add_argument("--out", help="default: models/backbones/<seed>.pt")
    p.add_argument("--checkpoint", help="resumable checkpoint of an interrupted run (not a DVC "
                                        "output); default: models/backbones/<seed>.ckpt")
    p.add_argument("--curves", help="dvclive directory: per-epoch curves and metrics.json; "
                                    "default: metrics/backbone/<seed>")
    args = p.parse_args()
    all_params = load_params(args.params)
    seeds = replicate_seeds(all_params) if "replicates" in all_params or "seed" in (
        all_params.get("backbone") or {}) else [args.seed]  # a bad list stops here
    params = section(all_params, "backbone")
    cfg = dataclasses.replace(BackboneConfig.from_params(params), seed=args.seed)
    if cfg.init and cfg.epochs == 0 and len(seeds) > 1:
        raise LTError(f"backbone.init = {cfg.init!r} with backbone.epochs = 0 is one backbone, "
                      f"used as it is, but replicates.seeds = {seeds} asks for {len(seeds)}: "
                      "they would be copies that the intervals take for independent backbones. "
                      "Set `replicates: {seeds: [0]}`, or fine-tune it (epochs > 0) so that "
                      "each seed is its own replicate")
    args.out = args.out or str(backbone_path(args.seed))
    args.checkpoint = args.checkpoint or str(checkpoint_path(args.seed))
    args.curves = args.curves or str(curves_dir(args.seed))
    splits = read_splits(args.data)
    writes = launched_rank() == 0  # other torchrun ranks train only
    with training_log(args.curves) if writes else contextlib.nullcontext() as log:
        result = train_backbone(splits, cfg, cfg.device, args.checkpoint,
                                cfg.checkpoint_every, args.quiet,
                                on_epoch=log.epoch if log else None)
        if not log:
            return
        notes = {"normalization": cfg.normalization}
        if cfg.init:
            notes.update(init=cfg.init, init_sha256=sha256_file(cfg.init), init_note=result.init_note)
        save_torch(args.out, backbone_payload(result.model, cfg.arch, splits.num_classes,
                                              splits.in_channels,
                                              splits.dataset, result.head, notes))
        summary = {"epochs": cfg.epochs}
        if result.head != "missing":  # a head to be fitted later has no test accuracy yet
            test = evaluate_images(result.model, splits, "test")
            summary.update({f"test_{k}": v for k, v in test.items()})
        log.summary(summary)
    # The run is finished and saved: its checkpoint is only for resuming an interrupted run.
    Path(args.checkpoint).unlink(missing_ok=True)
    if result.init_note:
        print(f"stage 1 from {cfg.init}: {result.init_note}")
    if "test_acc" in summary:
        print(f"stage 1, seed {args.seed}: test acc {summary['test_acc']:.2f}%  balanced {summary['test_bacc']:.2f}%")


if __name__ == "__main__":
    run(main, interrupted="interrupted; the last resumable checkpoint (written every "
                          "backbone.checkpoint_every epochs) is kept: `dvc repro` resumes from it")
