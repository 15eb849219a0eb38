"""The `lttools` command: `methods` lists the registry; `report` says where the report is;
`compare` sets results of revisions side by side, with intervals and paired tests; `sweep`
runs a grid of experiments on Slurm (submitit) and follows it;
`import-features` builds a feature store from arrays; `export-features` writes one back out."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lttools.errors import LTError
from lttools.retrain.registry import all_methods
from lttools.retrain.spec import SCHEDULE_PARAMS, TRAIN_PARAMS
from lttools.sweep import cli as sweep_cli


def _fmt(v) -> str:
    return "[" + ", ".join(f"{x:g}" for x in v) + "]" if isinstance(v, list) else (
        f"{v:g}" if isinstance(v, float) else str(v))


def methods_text() -> str:
    lines = []
    for name, m in sorted(all_methods().items()):
        lines.append(f"{name}  ({'needs the class prior' if m.needs_prior else 'prior-free'})")
        lines.append(f"    {m.description}")
        for pname, spec in m.all_params().items():
            generic = pname in TRAIN_PARAMS or pname in SCHEDULE_PARAMS
            if generic and pname not in m.train_defaults:
                continue
            lines.append(f"    {pname:<14} default {_fmt(spec.default):<22} valid {spec.describe()}"
                         f"  {spec.help}")
        lines.append("")
    common = ", ".join(f"{k} {spec.describe()}" for k, spec in
                       {**TRAIN_PARAMS, **SCHEDULE_PARAMS}.items())
    lines.append(f"every method also takes: {common}; a list value is a grid chosen on validation")
    return "\n".join(lines)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="lttools", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("methods", help="list every re-training method with its parameters")
    rp = sub.add_parser("report", help="print where the HTML report is")
    rp.add_argument("--path", default="reports/report.html")
    ip = sub.add_parser("import-features", help="a feature store from .npz / .pt / .npy arrays")
    ip.add_argument("source", help="an .npz, a .pt, or a folder of <key>.npy files")
    ip.add_argument("--out", required=True, help="the feature store to write (.h5)")
    ip.add_argument("--dataset", default="imported", help="a name for the data")
    ip.add_argument("--dtype", default="float32", choices=("float32", "float16"))
    ep = sub.add_parser("export-features", help="a feature store's arrays as an .npz")
    ep.add_argument("store")
    ep.add_argument("out")
    cp = sub.add_parser("compare", help="methods x revisions (commits, branches, tags, DVC "
                        "experiments, `workspace`): intervals, and changes with paired tests")
    cp.add_argument("revs", nargs="+", metavar="REV", help="the first is the baseline")
    cp.add_argument("--repo", default=".", help="the DVC repository (default: here)")
    cp.add_argument("--out", default="comparison",
                    help="writes compare.md and compare.html here (default: comparison/)")
    cp.add_argument("--json", action="store_true", help="print JSON instead of Markdown")
    cp.add_argument("--resamples", type=int, help="bootstrap resamples (default: the first "
                    "revision's uncertainty.resamples)")
    cp.add_argument("--pool", action="store_true", help="the revisions are backbone replicates "
                    "of one setting (other replicates.seeds): one leaderboard over backbones x "
                    "seeds x test images, with P(A > B) and rank stability (writes pooled.md)")
    sweep_cli.add_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return _run(args)
    except LTError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    if args.cmd == "methods":
        print(methods_text())
        return 0
    if args.cmd == "compare":
        return _compare(args)
    if args.cmd == "sweep":
        return sweep_cli.main(args)
    if args.cmd == "import-features":
        from lttools.features.arrays import ImportConfig, import_arrays

        attrs = import_arrays(ImportConfig(args.source, args.dataset, args.dtype), args.out)
        print(f"{args.out}: {attrs['views']} augmented view(s), head {attrs['head_source']}")
        return 0
    if args.cmd == "export-features":
        from lttools.features.arrays import export_store

        export_store(args.store, args.out)
        print(args.out)
        return 0
    page = Path(args.path)
    if not page.exists():
        print(f"no report at {page}; run `dvc repro report` (or `make demo`)", file=sys.stderr)
        return 1
    print(page.resolve())
    return 0


def _compare(args: argparse.Namespace) -> int:
    import json

    from lttools.atomic import write_text
    from lttools.compare import render
    from lttools.compare.revisions import read_revision
    from lttools.compare.table import compare
    from lttools.stats import Settings

    revisions = [read_revision(args.repo, rev) for rev in args.revs]
    section = dict(revisions[0].params.get("uncertainty") or {})
    if args.resamples is not None:
        section["resamples"] = args.resamples
    settings = Settings.from_params(section)
    out = Path(args.out)
    if args.pool:
        from lttools.compare import pool_render
        from lttools.compare.pool import pool

        pooled = pool(revisions, settings)
        text = pool_render.markdown(pooled)
        write_text(out / "pooled.md", text)
        print(json.dumps(pool_render.as_json(pooled), indent=2) if args.json else text)
        return 0
    cmp = compare(revisions, settings)
    text = render.markdown(cmp)
    diagram = None
    if cmp.ranking is not None:
        from lttools.compare.diagram import critical_difference

        out.mkdir(parents=True, exist_ok=True)
        diagram = critical_difference(cmp.ranking, out / "critical_difference.png")
    write_text(out / "compare.md", text)
    write_text(out / "compare.html", render.page(cmp, diagram))
    print(json.dumps(render.as_json(cmp), indent=2) if args.json else text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
