"""Stage `train_backbone`: stage-1 CE training; resumes from its checkpoint after a crash."""
from lttools.atomic import save_torch, write_json
from lttools.data.prepared import read_splits
from lttools.stage_cli import load_params, parser, run, section
from lttools.train import (BackboneConfig, backbone_payload, evaluate_images, train_backbone)


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--data", default="data/prepared/dataset.h5")
    p.add_argument("--out", default="models/backbone.pt")
    p.add_argument("--checkpoint", default="models/backbone.ckpt")
    p.add_argument("--metrics", default="metrics/backbone.json")
    p.add_argument("--history", default="metrics/plots/backbone.json")
    args = p.parse_args()
    params = section(load_params(args.params), "backbone")
    cfg = BackboneConfig.from_params(params)
    splits = read_splits(args.data)
    result = train_backbone(splits, cfg, params.get("device", "auto"), args.checkpoint,
                            int(params.get("checkpoint_every", 5)), args.quiet)
    if not result.is_main:  # other torchrun ranks: rank 0 writes the outputs
        return
    save_torch(args.out, backbone_payload(result.model, cfg, splits))
    test = evaluate_images(result.model, splits, "test")
    last = result.history[-1]
    write_json(args.metrics, {**{f"test_{k}": v for k, v in test.items()},
                              "val_bacc": last.get("val_bacc", float("nan")),
                              "train_loss": last["loss"], "train_acc": last["train_acc"],
                              "epochs": cfg.epochs})
    write_json(args.history, result.history)
    print(f"stage 1: test acc {test['acc']:.2f}%  balanced {test['bacc']:.2f}%")


if __name__ == "__main__":
    run(main)
