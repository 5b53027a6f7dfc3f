"""Writing files so that nothing a user had is lost: atomic replaces and never-overwrite creates.

A write goes to a temporary `.tmp-<pid>@<host>-*` file beside its target first; a writer killed mid-write leaves it
behind, and `remove_abandoned` deletes those whose process is gone. Also the one timestamp format that names run
folders and submission files.
"""

from __future__ import annotations

import json
import os
import re
import socket
import tempfile
import time
from collections.abc import Callable
from contextlib import suppress
from datetime import datetime, timezone
from pathlib import Path
from typing import Any


def timestamp() -> str:
    """Local time as `YYYYmmdd-HHMMSS`: sorts in time order, names runs and submissions."""
    return datetime.now().strftime("%Y%m%d-%H%M%S")


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


TEMP_PREFIX = ".tmp-"
_TEMP_OWNER = re.compile(r"\.tmp-(\d+)@(.+)-[^-]+")  # .tmp-<pid>@<host>-<mkstemp's random part>
LEGACY_TEMP_AGE = 3600  # seconds after which a temporary file that names no process counts as abandoned


def process_alive(pid: int, host: str) -> bool:
    """Whether process `pid` of machine `host` may still run: True for another machine's, which cannot be asked."""
    if host != socket.gethostname():
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # it exists, under another user
        return True
    return True


def remove_abandoned(folder: Path, recursive: bool = False) -> list[Path]:
    """Delete temporary files of writes that were killed: their process is gone (or, for files that do not name
    one, they are over an hour old). Returns what was deleted; a file another process is writing is left alone."""
    folder = Path(folder)
    removed = []
    for path in folder.rglob(f"{TEMP_PREFIX}*") if recursive else folder.glob(f"{TEMP_PREFIX}*"):
        owner = _TEMP_OWNER.fullmatch(path.name)
        try:
            gone = not process_alive(int(owner[1]), owner[2]) if owner else (
                time.time() - path.stat().st_mtime > LEGACY_TEMP_AGE)  # fmt: skip
            if gone and path.is_file():
                path.unlink()
                removed.append(path)
        except OSError:  # removed meanwhile, or not ours to remove
            continue
    return removed


def _write_temp(folder: Path, write: Callable[[Path], None]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=f"{TEMP_PREFIX}{os.getpid()}@{socket.gethostname()}-")
    os.close(fd)
    tmp_path = Path(tmp)
    try:
        write(tmp_path)
        tmp_path.chmod(0o666 & ~_umask())  # mkstemp makes 0600; the finished file gets the usual permissions
    except BaseException:
        tmp_path.unlink(missing_ok=True)
        raise
    return tmp_path


def atomic_write(path: Path, write: Callable[[Path], None]) -> Path:
    """Write through `write(tmp)` then rename over `path`: readers see the old file or the new, never half."""
    path = Path(path)
    os.replace(_write_temp(path.parent, write), path)
    return path


def write_new(path: Path, write: Callable[[Path], None]) -> Path:
    """Atomically create `path`, never replacing an existing file: a clash gets a `-2`, `-3`... suffix. Temporary
    files that killed writers left in the folder are removed first."""
    path = Path(path)
    if path.parent.is_dir():
        remove_abandoned(path.parent)
    tmp = _write_temp(path.parent, write)
    try:
        for n in range(1, 1000):
            candidate = path if n == 1 else path.with_name(f"{path.stem}-{n}{path.suffix}")
            try:
                os.link(tmp, candidate)  # fails if candidate exists: no race with another writer
            except FileExistsError:
                continue
            return candidate
        raise FileExistsError(f"Could not find a free name for {path}.")
    finally:
        with suppress(FileNotFoundError):
            tmp.unlink()


def write_json(path: Path, data: Any) -> Path:
    return atomic_write(path, lambda tmp: tmp.write_text(json.dumps(data, indent=2, default=str) + "\n"))


def write_csv(path: Path, frame: Any, **to_csv: Any) -> Path:
    """A pandas frame as CSV, atomically (`index=False` unless given)."""
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, **{"index": False, **to_csv}))


def utc_now() -> str:
    """The current UTC time in ISO 8601, to the second: when something happened, for records."""
    return datetime.now(timezone.utc).isoformat(timespec="seconds")
