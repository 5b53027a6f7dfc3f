"""Run folders and their record: config, metrics, timings and artifacts of one run, so runs can be reproduced and
compared, and an unfinished run of the same configuration can be continued.

`run.json` is rewritten atomically after every step, so a killed run still says how far it got. A run in progress
holds `run.lock` (its pid and host) in its folder: a second identical command refuses to train into the same folder,
and a run whose process is gone (killed, machine restarted) is marked `interrupted` and resumed by the next one. The
holder touches the lock every minute, so a lock written on another machine counts as gone once untouched for ten.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import platform
import shlex
import socket
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from kagglekit._io import process_alive, remove_abandoned, timestamp, utc_now, write_json
from kagglekit.errors import DataError
from kagglekit.train.distributed import is_main_process

log = logging.getLogger(__name__)

PACKAGES = (
    "kagglekit",
    "torch",
    "torchvision",
    "timm",
    "fastai",
    "pandas",
    "scikit-learn",
    "pydicom",
    "numpy",
)


def environment() -> dict[str, str]:
    """Versions that decide whether a run can be reproduced."""
    versions = {"python": sys.version.split()[0], "platform": platform.platform()}
    for package in PACKAGES:
        try:
            versions[package] = version(package)
        except PackageNotFoundError:
            versions[package] = "not installed"
    return versions


@dataclass
class RunRecord:
    folder: Path
    config: dict[str, Any]
    config_key: str = ""  # hash of what decides the results: a re-run with the same key resumes this run
    started: str = field(default_factory=utc_now)
    status: str = "running"
    timings: dict[str, float] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    artifacts: dict[str, str] = field(default_factory=dict)
    notes: list[str] = field(default_factory=list)

    @property
    def path(self) -> Path:
        return self.folder / "run.json"

    def save(self) -> None:
        """Rewrite run.json, keeping entries other tools added (e.g. `kaggle` scores from `kagglekit submit`)."""
        if not is_main_process():
            return
        earlier = json.loads(self.path.read_text()) if self.path.is_file() else {}
        write_json(
            self.path,
            {
                **earlier,
                "status": self.status,
                "config_key": self.config_key,
                "started": self.started,
                "config": self.config,
                "environment": environment(),
                "timings_seconds": self.timings,
                "metrics": self.metrics,
                "artifacts": self.artifacts,
                "notes": self.notes,
            },
        )

    def artifact(self, name: str, path: Path) -> Path:
        self.artifacts[name] = str(Path(path).resolve())
        return path

    @contextmanager
    def step(self, name: str):
        """Time a step and save the record after it, whether it finished or failed."""
        started = time.perf_counter()
        try:
            yield
        except KeyboardInterrupt:
            self.status = f"interrupted in {name}"
            raise
        except BaseException:
            self.status = f"failed in {name}"
            raise
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - started, 2)
            self.save()


def config_key(config: dict[str, Any]) -> str:
    """A short hash of what decides a run's results: a re-run with the same key continues that run."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


LOCK = "run.lock"
INTERRUPTED = "interrupted"
HEARTBEAT = 60  # seconds between the lock holder's touches of run.lock
FOREIGN_STALE = 10 * HEARTBEAT  # a lock of another machine untouched this long: its process is gone


def lock_owner(folder: Path) -> dict | None:
    """Who holds the run folder's lock (`pid`, `host`, `started`, `command`), if a process that may still run does:
    on this machine, a running process; on another one (a shared folder, an earlier Kaggle session), a lock touched
    by its holder in the last `FOREIGN_STALE` seconds."""
    path = Path(folder) / LOCK
    try:
        owner = json.loads(path.read_text())
        pid, host = int(owner["pid"]), str(owner["host"])
        alive = process_alive(pid, host) if host == socket.gethostname() else (
            time.time() - path.stat().st_mtime < FOREIGN_STALE)  # fmt: skip
    except (OSError, ValueError, KeyError, TypeError):  # no lock, or one torn by a kill while it was written
        return None
    mine = pid == os.getpid() and host == socket.gethostname()
    return owner if alive and not mine else None


def run_status(folder: Path) -> str:
    """A run's status as recorded in run.json, except that a `running` run whose process is gone is `interrupted`."""
    try:
        status = json.loads((Path(folder) / "run.json").read_text()).get("status", "")
    except (OSError, ValueError):
        return ""
    return INTERRUPTED if status == "running" and lock_owner(folder) is None else status


def _busy(folder: Path, owner: dict) -> DataError:
    return DataError(
        f"A run of this configuration is in progress in {folder} (pid {owner['pid']} on {owner['host']}, since "
        f"{owner.get('started', '?')}): wait for it, or pass --fresh to train a separate run. (A lock of a process "
        f"that is gone is taken over: at once on this machine, after {FOREIGN_STALE // 60} minutes from another.)"
    )


def _lock(folder: Path) -> None:
    """Take the folder's lock: create `run.lock` naming this process; a lock whose process is gone is replaced."""
    owner = lock_owner(folder)
    if owner is not None:
        raise _busy(folder, owner)
    mine = {"pid": os.getpid(), "host": socket.gethostname(), "started": utc_now(), "command": shlex.join(sys.argv)}
    write_json(folder / LOCK, mine)


def _heartbeat(path: Path, stop: threading.Event) -> None:
    """Touch the lock every `HEARTBEAT` seconds, so that another machine sees it is still held."""
    while not stop.wait(HEARTBEAT):
        with suppress(OSError):
            os.utime(path)


def _unlock(folder: Path) -> None:
    try:
        if json.loads((folder / LOCK).read_text()).get("pid") == os.getpid():
            (folder / LOCK).unlink()
    except (OSError, ValueError):
        pass


@contextmanager
def _exclusive(folder: Path) -> Iterator[None]:
    """Only one kagglekit process at a time chooses or creates a run folder here (an OS lock, freed if it dies)."""
    folder.mkdir(parents=True, exist_ok=True)
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows: no OS lock, run.lock alone
        yield
        return
    with open(folder / ".kagglekit.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _mark_interrupted(records: list[tuple[Path, dict]]) -> None:
    """Rewrite the status of runs recorded as `running` whose process is gone."""
    for folder, saved in records:
        if saved.get("status") == "running" and lock_owner(folder) is None:
            saved["status"] = INTERRUPTED
            write_json(folder / "run.json", saved)
            log.info("Marked %s as interrupted: its process is gone", folder)


def _new_folder(parent: Path, name: str) -> Path:
    """A fresh `<timestamp>_<name>` folder (`-2`, `-3`... when two runs start in the same second)."""
    stem = f"{timestamp()}_{name}"
    for n in range(1, 1000):
        folder = parent / (stem if n == 1 else f"{stem}-{n}")
        try:
            folder.mkdir(parents=True)
        except FileExistsError:
            continue
        return folder
    raise DataError(f"Could not create a run folder {parent / stem} (1000 exist).")


@contextmanager
def claim_run(runs_dir: Path, competition: str, name: str, key: str, fresh: bool = False,
              lock: bool = True) -> Iterator[Path]:  # fmt: skip
    """The run folder for a run with config hash `key`, locked for as long as the `with` block runs.

    The newest unfinished run of the same configuration in `runs_dir/<competition>/` is resumed (its leftover
    temporary files removed), else a new `<timestamp>_<name>` folder is made; `fresh` always makes a new one. A
    run of the configuration in progress in another process is a `DataError`, and runs whose process is gone are
    marked interrupted first. `lock=False` (the helper processes of a multi-GPU run) joins the run rank 0 holds.
    """
    parent = Path(runs_dir) / competition
    with _exclusive(parent):
        records = []
        for record in sorted(parent.glob("*/run.json"), reverse=True):
            try:
                records.append((record.parent, json.loads(record.read_text())))
            except (OSError, ValueError):
                continue
        if lock:
            _mark_interrupted(records)
        same = [f for f, saved in records if saved.get("config_key") == key and saved.get("status") != "finished"]
        folder = None if fresh or not same else same[0]
        if folder is not None:
            if lock:
                _lock(folder)
                remove_abandoned(folder, recursive=True)
            log.info("Resuming the unfinished run in %s (use --fresh to start over)", folder)
        elif lock:
            folder = _new_folder(parent, name)
            write_json(folder / "run.json", {"status": "running", "config_key": key})  # seen by the next command
            _lock(folder)
        else:  # a helper process, before rank 0 made the folder (main_process_first prevents it)
            raise DataError(f"No run of this configuration in {parent} to join.")
    stop = threading.Event()
    if lock:
        threading.Thread(target=_heartbeat, args=(folder / LOCK, stop), name="run.lock heartbeat", daemon=True).start()
    try:
        yield folder
    finally:
        stop.set()
        if lock:
            _unlock(folder)


def find_run(runs_dir: Path, competition: str, artifact: str, path: Path) -> Path | None:
    """The run.json under `runs_dir/<competition>/` whose artifact `artifact` is `path` (e.g. the run that wrote a
    submission file), or None."""
    wanted = Path(path).resolve()
    for run_json in sorted((Path(runs_dir) / competition).glob("*/run.json")):
        try:
            made = json.loads(run_json.read_text()).get("artifacts", {}).get(artifact)
        except (OSError, ValueError):
            continue
        if made and Path(made).resolve() == wanted:
            return run_json.resolve()
    return None
