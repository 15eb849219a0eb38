"""Stage-1 training curves, logged with dvclive (DVC's own logger).

`<dir>/plots/metrics/<name>.tsv` holds one row per epoch (step = epoch) for every name in
CURVES, which `dvc plots show` draws; `<dir>/metrics.json` holds the last epoch's values plus
the final summary (test accuracy, ...), which `dvc metrics show` and `dvc exp show` read.
A resumed run replays the epochs restored from its checkpoint first, so the files always
cover the whole run. Only the process that writes outputs (rank 0) opens a log.
"""
from __future__ import annotations

import contextlib
import csv
import math
import shutil
from pathlib import Path
from typing import Any, Iterator

from lttools.errors import LTError

CURVES = ("loss", "train_acc", "val_bacc", "lr")
SUMMARY_FILE = "metrics.json"
CURVES_DIR = Path("plots") / "metrics"


class TrainingLog:
    """What the training loop calls: one `epoch(row)` per finished epoch."""

    def __init__(self, live: Any) -> None:
        self._live = live

    def epoch(self, row: dict[str, float]) -> None:
        self._live.step = int(row["epoch"])
        for name in CURVES:
            if name in row:
                self._live.log_metric(name, float(row[name]))
        self._live.next_step()

    def summary(self, values: dict[str, float]) -> None:
        """Final numbers (test accuracy, ...) added to `metrics.json` when the log closes."""
        self._live.summary.update(values)


def _require_dvc_repo() -> None:
    from dvc.exceptions import NotDvcRepoError
    from dvc.repo import Repo

    try:
        Repo.find_root()
    except NotDvcRepoError as exc:
        # dvclive would otherwise run `dvc init` in the enclosing git repository.
        raise LTError("stage scripts log with dvclive and must run inside the lttools "
                      "checkout (a DVC repository): cd to the repository root") from exc


@contextlib.contextmanager
def training_log(directory: str | Path) -> Iterator[TrainingLog]:
    """Open a fresh dvclive log in `directory` (earlier contents are removed). If the work
    inside fails, the partial log is removed too: no half-written output is left behind (a
    resumed run replays the epochs it restores)."""
    _require_dvc_repo()
    from dvclive import Live
    from scmrepo.exceptions import SCMError

    try:
        live = Live(str(directory), dvcyaml=None, save_dvc_exp=False, report=None)
    except SCMError as exc:
        raise LTError(f"dvclive cannot log in this git repository ({exc}): make a first "
                      "commit (`git add -A && git commit -m init`), then re-run") from exc
    try:
        with live:
            yield TrainingLog(live)
    except BaseException:
        shutil.rmtree(directory, ignore_errors=True)
        raise
    for name in CURVES:  # a curve never logged (no epochs, no validation) is an empty file
        path = Path(directory) / CURVES_DIR / f"{name}.tsv"
        if not path.exists():
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(f"step\t{name}\n")


def read_curves(directory: str | Path) -> list[dict[str, float]]:
    """The per-epoch rows of a log directory ({"epoch": ..., "loss": ..., ...}); [] if absent."""
    rows: dict[int, dict[str, float]] = {}
    for name in CURVES:
        path = Path(directory) / CURVES_DIR / f"{name}.tsv"
        if not path.exists():
            continue
        with path.open(newline="") as f:
            for rec in csv.DictReader(f, delimiter="\t"):
                step = int(rec["step"])
                value = float(rec[name]) if rec[name] not in ("", None) else math.nan
                rows.setdefault(step, {"epoch": step})[name] = value
    return [rows[s] for s in sorted(rows)]
