"""Stage `train_backbone`: stage-1 CE training; resumes from its checkpoint after a crash."""
import _this_repo  # noqa: F401  (this repository's lttools, imported first)
import contextlib
from pathlib import Path

from lttools.atomic import save_torch
from lttools.backbone.config import BackboneConfig
from lttools.backbone.distributed import launched_rank
from lttools.backbone.evaluate import evaluate_images
from lttools.backbone.saved import backbone_payload
from lttools.backbone.train import train_backbone
from lttools.backbone.training_log import training_log
from lttools.data.prepared import read_splits
from lttools.provenance import sha256_file
from lttools.stage_cli import load_params, parser, run, section


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--data", default="data/prepared/dataset.h5")
    p.add_argument("--out", default="models/backbone.pt")
    p.add_argument("--checkpoint", default="models/backbone.ckpt",
                   help="resumable checkpoint of an interrupted run (not a DVC output)")
    p.add_argument("--curves", default="metrics/backbone",
                   help="dvclive directory: per-epoch curves and metrics.json")
    args = p.parse_args()
    params = section(load_params(args.params), "backbone")
    cfg = BackboneConfig.from_params(params)
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
        print(f"stage 1: test acc {summary['test_acc']:.2f}%  balanced {summary['test_bacc']:.2f}%")


if __name__ == "__main__":
    run(main, interrupted="interrupted; the last resumable checkpoint (written every "
                          "backbone.checkpoint_every epochs) is kept: `dvc repro` resumes from it")
