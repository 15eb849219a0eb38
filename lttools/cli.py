"""The `lttools` command: `lttools methods` lists the registry; `lttools report` says where
the report is."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path

from lttools.retrain.registry import SCHEDULE_PARAMS, TRAIN_PARAMS, all_methods


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


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="lttools", description=__doc__)
    sub = p.add_subparsers(dest="cmd", required=True)
    sub.add_parser("methods", help="list every re-training method with its parameters")
    rp = sub.add_parser("report", help="print where the HTML report is")
    rp.add_argument("--path", default="reports/report.html")
    args = p.parse_args(argv)
    if args.cmd == "methods":
        print(methods_text())
        return 0
    page = Path(args.path)
    if not page.exists():
        print(f"no report at {page}; run `dvc repro report` (or `make demo`)", file=sys.stderr)
        return 1
    print(page.resolve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
