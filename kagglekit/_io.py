"""Writing files so that nothing a user had is lost: atomic replaces and never-overwrite creates.

Also the one timestamp format that names run folders and submission files.
"""

from __future__ import annotations

import json
import os
import tempfile
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


def _write_temp(folder: Path, write: Callable[[Path], None]) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=folder, prefix=".tmp-")
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
    """Atomically create `path`, never replacing an existing file: a clash gets a `-2`, `-3`... suffix."""
    path = Path(path)
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
