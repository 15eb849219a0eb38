"""What the sweep machinery costs: the same 2 x 2 sweep (2 backbones x 2 LOS eps, tiny
Fashion-MNIST-LT) run by `dvc queue start -j 2` (the reference: DVC's own queue, one machine)
and by `lttools sweep` on submitit's local executor and, where it runs, on the one-node Slurm
(tests/slurm/one_node.sh), each in a fresh repository, in one run. Prints the wall times, their
ratio against the queue, and each job's own seconds per step (clone, DVC set-up, run, push,
cleanup), so the per-point overhead can be set against the point's own work.

    python bench/sweep.py                    # local executor, Slurm if it starts, the queue
    python bench/sweep.py --runs queue local
"""
from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))

from pipeline_helpers import dvc, env, sweep_repo  # noqa: E402

AXES = ["backbone.weight_decay=5e-4,5e-3", "methods.los.eps=0.9,0.98"]


def run_queue(repo: Path) -> float:
    t0 = time.perf_counter()
    dvc(repo, "exp", "run", "--queue", "--copy-paths", "data/raw", *[a for x in AXES for a in ("-S", x)])
    dvc(repo, "queue", "start", "-j", "2")
    while any(s in dvc(repo, "queue", "status") for s in ("Queued", "Running")):
        time.sleep(1)
    return time.perf_counter() - t0


def run_sweep(repo: Path, cluster: str) -> tuple[float, list[dict]]:
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-m", "lttools.cli", "sweep", "run", "--cluster",
                          cluster, "--name", "b", "--wait", *[a for x in AXES for a in ("-S", x)]],
                         cwd=repo, env=env(), capture_output=True, text=True)
    seconds = time.perf_counter() - t0
    if out.returncode != 0:
        raise SystemExit(f"sweep on {cluster} failed:\n{out.stdout}\n{out.stderr}")
    reports = [json.loads(p.read_text()) for p in (repo / ".lttools/jobs").glob("*/reports/*.json")]
    return seconds, reports


def overhead(reports: list[dict]) -> str:
    lines = []
    for stage in ("backbone", "point"):
        rs = [r for r in reports if r["stage"] == stage]
        steps = {k: statistics.mean(r["seconds"].get(k, 0.0) for r in rs)
                 for k in ("wait", "clone", "setup", "run", "push", "cleanup", "total")}
        machinery = steps["clone"] + steps["setup"] + steps["push"] + steps["cleanup"]
        lines.append(f"  {stage} jobs ({len(rs)}), mean seconds: " + ", ".join(
            f"{k} {v:.2f}" for k, v in steps.items()) +
            f"; machinery (clone + set-up + push + cleanup) {machinery:.2f} s = "
            f"{100 * machinery / max(steps['run'], 1e-9):.1f} % of the run")
    return "\n".join(lines)


def slurm_up() -> bool:
    return subprocess.run(["bash", str(ROOT / "tests/slurm/one_node.sh"), "start"]).returncode == 0


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--runs", nargs="+", default=["queue", "local", "slurm"],
                   choices=["queue", "local", "slurm"])
    args = p.parse_args()
    times = {}
    for run in args.runs:
        if run == "slurm" and not slurm_up():
            print("slurm: the one-node cluster did not start (tests/slurm/one_node.sh, as root)")
            continue
        with tempfile.TemporaryDirectory() as tmp:
            repo = sweep_repo(Path(tmp), backbone_epochs=5)
            if run == "queue":
                times[run] = run_queue(repo)
                print(f"dvc queue start -j 2: 2 x 2 sweep in {times[run]:.1f} s")
                continue
            times[run], reports = run_sweep(repo, run)
            print(f"lttools sweep --cluster {run}: 2 x 2 sweep in {times[run]:.1f} s")
            print(overhead(reports))
    if "queue" in times:
        for run in ("local", "slurm"):
            if run in times:
                print(f"{run} / queue wall time: {times[run] / times['queue']:.2f}x")


if __name__ == "__main__":
    main()
