"""`lttools sweep run | status | cancel`: the command line over the sweep package."""
from __future__ import annotations

import argparse
import json
import time
from dataclasses import asdict
from pathlib import Path

import yaml

from lttools.errors import LTError
from lttools.sweep.grid import make_points
from lttools.sweep.record import load_sweep
from lttools.sweep.settings import SETTINGS_FILE, load_settings
from lttools.sweep.status import cancel, job_states, table, to_retry
from lttools.sweep.submit import resubmit, start_sweep

DEFAULT_LINKS = ("data/raw", "data/images")  # git-ignored inputs a clone lacks


def add_parser(sub) -> None:
    sp = sub.add_parser("sweep", help="a grid of -S overrides as DVC experiments on Slurm "
                        "(submitit), each point pushed back as an experiment")
    verbs = sp.add_subparsers(dest="verb", required=True)
    run = verbs.add_parser("run", help="submit a sweep (or, with --retry failed, re-submit "
                           "what failed or was cancelled)")
    run.add_argument("-S", "--set-param", dest="overrides", action="append", default=[],
                     metavar="KEY=VALUES", help="as `dvc exp run -S`; a,b,c is a sweep axis")
    run.add_argument("--name", default="", help="experiment names are <name>-1, <name>-2, ...")
    run.add_argument("--retry", choices=["failed"], help="re-submit the failed and cancelled "
                     "points of the sweep (--sweep, default the latest)")
    run.add_argument("--sweep", help="with --retry: the sweep's id")
    run.add_argument("--link", action="append", default=[], metavar="PATH",
                     help="a git-ignored input the clones need, linked from this repository "
                     f"(default: {', '.join(DEFAULT_LINKS)} where they exist)")
    run.add_argument("--wait", action="store_true", help="return once every job has finished")
    _settings_flags(run)
    for verb, text in (("status", "where each job of a sweep stands, with its log"),
                       ("cancel", "cancel the jobs of a sweep that have not finished")):
        vp = verbs.add_parser(verb, help=text)
        vp.add_argument("sweep", nargs="?", help="the sweep's id (default: the latest)")
        vp.add_argument("--repo", default=".")
        if verb == "status":
            vp.add_argument("--json", action="store_true")


def _settings_flags(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repo", default=".", help="the DVC repository (default: here)")
    p.add_argument("--cluster", choices=["slurm", "local", "debug"],
                   help=f"default: {SETTINGS_FILE}'s, else slurm")
    p.add_argument("--partition")
    p.add_argument("--setup", action="append", default=[], metavar="LINE",
                   help="a shell line run before each job (module load ..., source venv)")
    p.add_argument("--scratch", help="folder for the jobs' clones, on a filesystem the nodes "
                   "share (default: .lttools/scratch)")
    p.add_argument("--remote", help="no shared filesystem: the Git remote the jobs clone and "
                   "push experiments to (outputs through the DVC remote)")


def _settings(args: argparse.Namespace):
    return load_settings(Path(args.repo), {"cluster": args.cluster, "partition": args.partition,
                                           "setup": args.setup, "scratch": args.scratch,
                                           "remote": args.remote})


def _links(args: argparse.Namespace) -> list[str]:
    return list(args.link) or [p for p in DEFAULT_LINKS if (Path(args.repo) / p).exists()]


def main(args: argparse.Namespace) -> int:
    repo = Path(args.repo).resolve()
    if args.verb == "run":
        return _run(args, repo)
    sweep = load_sweep(repo, args.sweep)
    states = job_states(sweep)
    if args.verb == "cancel":
        print(f"cancelled: {', '.join(cancel(sweep, states)) or 'nothing (all finished)'}")
        return 0
    if args.json:
        print(json.dumps({"sweep": sweep.sweep_id, "rev": sweep.rev,
                          "jobs": [asdict(s) for s in states]}, indent=1))
    else:
        print(f"sweep {sweep.sweep_id} at {sweep.rev[:7]} ({sweep.cluster})\n{table(states)}")
    return 0 if all(s.state in ("done", "pending", "running") for s in states) else 1


def _run(args: argparse.Namespace, repo: Path) -> int:
    settings = _settings(args)
    if args.retry:
        sweep = load_sweep(repo, args.sweep)
        keys = to_retry(sweep, job_states(sweep))
        print(f"re-submitted: {', '.join(resubmit(sweep, keys, settings, _links(args))) or 'nothing'}")
    else:
        if not args.overrides:
            raise LTError("give the sweep's params: -S key=a,b [-S key2=c,d ...]")
        params = yaml.safe_load((repo / "params.yaml").read_text())
        points = make_points(args.overrides, args.name or "sweep", repo / "dvc.yaml", params)
        sweep = start_sweep(repo, points, settings, _links(args), repo / "dvc.yaml")
        groups = len({p.group for p in points})
        print(f"sweep {sweep.sweep_id}: {len(points)} point(s) on {groups} backbone(s), "
              f"{settings.cluster}; `lttools sweep status` follows it")
        for p in points:
            print(f"  {p.name}: {' '.join(p.overrides)}")
    if args.wait:
        while True:
            states = job_states(sweep)
            if not any(s.state in ("pending", "running") for s in states):
                break
            time.sleep(2)
        print(table(states))
        return 0 if all(s.state == "done" for s in states) else 1
    return 0
