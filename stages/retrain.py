"""Stage `retrain@<key>`: one method's heads (grid x seeds) on the cached features."""
from lttools.atomic import write_json
from lttools.errors import LTError
from lttools.retrain.run import run_method
from lttools.stage_cli import load_params, parser, run, section


def main() -> None:
    p = parser(__doc__)
    p.add_argument("key", help="the entry under `methods:` in params.yaml")
    p.add_argument("--features", default="data/features/features.h5")
    p.add_argument("--metrics", help="default: metrics/methods/<key>.json")
    p.add_argument("--details", help="default: metrics/details/<key>.json")
    p.add_argument("--plots", help="folder of per-epoch and per-class plot data (default: "
                   "metrics/plots)")
    args = p.parse_args()
    params = load_params(args.params)
    methods = section(params, "methods")
    if args.key not in methods:
        raise LTError(f"no entry {args.key!r} under `methods:` in params.yaml; entries: "
                      f"{', '.join(methods)}")
    data = section(params, "data")
    expect = {"dataset": data.get("dataset"), "imb_ratio": float(data.get("imb_ratio", 0))}
    metrics, details = run_method(args.key, methods[args.key], section(params, "retrain"),
                                  args.features, expect, args.quiet)
    plots = args.plots or "metrics/plots"
    write_json(f"{plots}/epochs/{args.key}.json", details.pop("epochs"))
    write_json(f"{plots}/per_class/{args.key}.json", details.pop("per_class"))
    write_json(args.details or f"metrics/details/{args.key}.json", details)
    write_json(args.metrics or f"metrics/methods/{args.key}.json", metrics)
    print(f"{args.key}: test acc {metrics['test_acc_mean']:.2f} ± {metrics['test_acc_std']:.2f} "
          f"(last epoch {metrics['last_test_acc_mean']:.2f})")


if __name__ == "__main__":
    run(main)
