"""Stage `retrain@<key>`: one method's heads (grid x seeds) on the cached features."""
import _this_repo  # noqa: F401  (this repository's lttools, imported first)
from pathlib import Path

from lttools.errors import LTError
from lttools.provenance import expected_from_params
from lttools.results import ResultPaths, write_results
from lttools.retrain.run import run_method
from lttools.stage_cli import load_params, parser, run, section


def main() -> None:
    p = parser(__doc__)
    p.add_argument("key", help="the entry under `methods:` in params.yaml")
    p.add_argument("--features", default="data/features/features.h5")
    p.add_argument("--backbone", default="models/backbone.pt",
                   help="the backbone the store must come from ('none': imported features)")
    p.add_argument("--results-root", default="metrics",
                   help="writes methods/, details/, plots/{epochs,per_class}/<key>.json and "
                        "predictions/<key>.npz here")
    args = p.parse_args()
    params = load_params(args.params)
    methods = section(params, "methods")
    if args.key not in methods:
        raise LTError(f"no entry {args.key!r} under `methods:` in params.yaml; entries: "
                      f"{', '.join(methods)}")
    expect = expected_from_params(params)
    backbone = None if args.backbone == "none" else args.backbone
    metrics, details, predictions = run_method(
        args.key, methods[args.key], section(params, "retrain"), args.features, expect, backbone,
        args.quiet, params.get("uncertainty"))
    write_results(ResultPaths(Path(args.results_root)), args.key, metrics, details, predictions)
    print(f"{args.key}: test bal. acc {metrics['test_bacc_mean']:.2f} ± "
          f"{metrics['test_bacc_std']:.2f} over seeds, {metrics['ci_level']:.0%} interval "
          f"[{metrics['test_bacc_ci_low']:.2f}, {metrics['test_bacc_ci_high']:.2f}] "
          f"(last epoch {metrics['last_test_bacc_mean']:.2f})")


if __name__ == "__main__":
    run(main, interrupted="interrupted; this method's results were not written (earlier ones, "
                          "if any, are unchanged): `dvc repro` trains it again from the start")
