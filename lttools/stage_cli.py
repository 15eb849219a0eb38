"""What every stage script shares: reading params.yaml and turning LTError into a message."""
from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any, Callable

import yaml

from lttools.atomic import is_disk_full
from lttools.errors import LTError

RERUN = "interrupted; no output was written, `dvc repro` runs this stage again"


def load_params(path: str | Path = "params.yaml") -> dict[str, Any]:
    path = Path(path)
    if not path.exists():
        raise LTError(f"{path} not found; run from the repository root or pass --params")
    return read_mapping(path, "sections (data, backbone, ...)")


def read_mapping(path: Path, of_what: str) -> dict[str, Any]:
    """A YAML file that must hold a mapping; an empty file is an empty one."""
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise LTError(f"{path} is not valid YAML: {exc}") from exc
    if not isinstance(values, dict):
        raise LTError(f"{path} must hold a mapping of {of_what}")
    return values


def section(params: dict[str, Any], name: str) -> dict[str, Any]:
    value = params.get(name)
    if not isinstance(value, dict):
        raise LTError(f"params.yaml has no `{name}:` section (a mapping)")
    return value


def parser(description: str) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=description)
    p.add_argument("--params", default="params.yaml", help="parameters file")
    p.add_argument("--quiet", action="store_true", help="no progress bars")
    return p


def message(exc: LTError) -> str:
    """The error's own message; an LTError raised in a DataLoader worker arrives wrapped in
    the worker's traceback, of which its last line is the message."""
    text = str(exc)
    if "Original Traceback" in text:
        last = text.strip().splitlines()[-1]
        text = last.split(": ", 1)[1] if last.startswith("lttools.errors.LTError: ") else last
    return text


def run(main: Callable[[], None], interrupted: str = RERUN) -> None:
    """Call main(); an LTError (or a full disk) becomes `error: ...` on stderr and exit code
    2; Ctrl-C prints `interrupted`, which says what was kept and how to go on."""
    try:
        main()
    except LTError as exc:
        print(f"error: {message(exc)}", file=sys.stderr)
        sys.exit(2)
    except OSError as exc:
        if not is_disk_full(exc):
            raise
        print(f"error: no space left on the device ({exc}); free some space and re-run",
              file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print(interrupted, file=sys.stderr)
        sys.exit(130)
