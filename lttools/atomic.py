"""Atomic output: write to a temporary file beside the target, then rename over it.

DVC hashes whatever lies at an output path; a crash mid-write must leave either the old
file or nothing, never a truncated one. A full disk is reported as such, and the
temporary file is removed.
"""
from __future__ import annotations

import contextlib
import errno
import io
import json
import os
import signal
import tempfile
from pathlib import Path
from typing import Any, Iterator

from lttools.errors import LTError

DISK_FULL = (errno.ENOSPC, errno.EDQUOT)


def is_disk_full(exc: BaseException) -> bool:
    """An OSError from a full disk or quota, also as HDF5 reports it (errno in the text)."""
    if not isinstance(exc, OSError):
        return False
    text = str(exc)
    return exc.errno in DISK_FULL or "No space left on device" in text or "errno = 28" in text


def disk_full_error(path: str | os.PathLike, exc: OSError) -> LTError:
    return LTError(f"no space left on the device while writing {path} ({exc.strerror or exc}); "
                   "free some space (or point the output elsewhere) and re-run. Nothing was "
                   "written there.")


def _tmp_beside(path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)  # mkstemp makes 0600; give the usual mode
    return Path(tmp)


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path in the target's folder; rename it to `path` on success only."""
    with atomic_paths([path]) as (tmp,):
        yield tmp


@contextlib.contextmanager
def _no_interrupt() -> Iterator[None]:
    """Hold SIGINT / SIGTERM back (main thread only) so that a set of renames is not cut in
    two; a held signal is delivered when the block ends."""
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT, signal.SIGTERM})
    except (AttributeError, ValueError, OSError):  # not the main thread, or no POSIX signals
        yield
        return
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


@contextlib.contextmanager
def atomic_paths(paths: list[str | os.PathLike]) -> Iterator[tuple[Path, ...]]:
    """Temporary paths for several outputs written as one set: all are renamed into place
    (with interrupts held back) only when the block succeeds; otherwise none is."""
    targets = [Path(p) for p in paths]
    tmps: list[Path] = []
    try:
        try:
            tmps = [_tmp_beside(t) for t in targets]
            yield tuple(tmps)
        except OSError as exc:
            if is_disk_full(exc):
                raise disk_full_error(", ".join(map(str, targets)), exc) from exc
            raise
        with _no_interrupt():
            for tmp, target in zip(tmps, targets):
                os.replace(tmp, target)
    finally:
        for tmp in tmps:
            if tmp.exists():
                tmp.unlink()


def write_text(path: str | os.PathLike, text: str) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def _json(obj: Any) -> str:
    return json.dumps(obj, indent=2, sort_keys=True) + "\n"


def write_json(path: str | os.PathLike, obj: Any) -> None:
    write_text(path, _json(obj))


def write_set(files: dict[Path, Any]) -> None:
    """Several files as one set: either all are replaced, or none. A `bytes` value is written
    as it is, anything else as JSON."""
    with atomic_paths(list(files)) as tmps:
        for tmp, obj in zip(tmps, files.values()):
            if isinstance(obj, bytes):
                tmp.write_bytes(obj)
            else:
                tmp.write_text(_json(obj))


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    """torch.save, atomically and byte-stable: torch names the archive inside the file after
    the file, so it is serialised under the final name (in memory), then written."""
    import torch

    buffer = io.BytesIO()
    torch.save(obj, buffer)
    with atomic_path(path) as tmp:
        tmp.write_bytes(buffer.getvalue())
