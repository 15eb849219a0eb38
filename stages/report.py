"""Stage `report`: leaderboard (metrics/leaderboard.md), PNG plots and reports/report.html."""
import _this_repo  # noqa: F401  (this repository's lttools, imported first)
from lttools.replicates import replicate_seeds
from lttools.report.build import build_report
from lttools.stage_cli import load_params, parser, run, section
from lttools.stats import Settings


def main() -> None:
    p = parser(__doc__)
    p.add_argument("--metrics-root", default="metrics")
    p.add_argument("--out-dir", default="reports")
    p.add_argument("--leaderboard", default="metrics/leaderboard.md")
    args = p.parse_args()
    params = load_params(args.params)
    keys = list(section(params, "methods"))
    seeds = replicate_seeds(params) if "replicates" in params else None
    page = build_report(keys, args.metrics_root, args.out_dir, args.leaderboard,
                        Settings.from_params(params.get("uncertainty")), seeds)
    print(f"report: {page}")


if __name__ == "__main__":
    run(main)
