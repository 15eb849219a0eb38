"""Stage `retrain@<key>`: one method's heads (grid x seeds) on every backbone replicate's cached
features, pooled into one set of results."""
import _this_repo  # noqa: F401  (this repository's lttools, imported first)
from pathlib import Path

from lttools.errors import LTError
from lttools.provenance import expected_from_params
from lttools.replicates import BACKBONES, FEATURES, for_seed, replicate_seeds
from lttools.results import ResultPaths, write_results
from lttools.retrain.plan import make_plan
from lttools.retrain.run import Replicate, run_method
from lttools.stage_cli import load_params, parser, run, section


def main() -> None:
    p = parser(__doc__)
    p.add_argument("key", help="the entry under `methods:` in params.yaml")
    p.add_argument("--features", default=f"{FEATURES}/{{seed}}/features.h5",
                   help="the feature stores, {seed} standing for each of replicates.seeds (a "
                        "path without {seed}: one store, imported features)")
    p.add_argument("--backbone", default=f"{BACKBONES}/{{seed}}.pt",
                   help="the backbone each store must come from ('none': imported features)")
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
    make_plan(args.key, methods[args.key], section(params, "retrain"))  # its errors first
    seeds = replicate_seeds(params) if "{seed}" in args.features else [0]
    replicates = [Replicate(s, Path(for_seed(args.features, s)),
                            None if args.backbone == "none" else Path(for_seed(args.backbone, s)))
                  for s in seeds]
    metrics, details, predictions = run_method(
        args.key, methods[args.key], section(params, "retrain"), replicates, expect,
        args.quiet, params.get("uncertainty"))
    write_results(ResultPaths(Path(args.results_root)), args.key, metrics, details, predictions)
    runs = "seeds" if len(seeds) == 1 else f"{len(seeds)} backbones x seeds"
    print(f"{args.key}: test bal. acc {metrics['test_bacc_mean']:.2f} ± "
          f"{metrics['test_bacc_std']:.2f} over {runs}, {metrics['ci_level']:.0%} interval "
          f"[{metrics['test_bacc_ci_low']:.2f}, {metrics['test_bacc_ci_high']:.2f}] "
          f"(last epoch {metrics['last_test_bacc_mean']:.2f})")


if __name__ == "__main__":
    run(main, interrupted="interrupted; this method's results were not written (earlier ones, "
                          "if any, are unchanged): `dvc repro` trains it again from the start")
