"""Run folders and their record: config, metrics, timings and artifacts of one run, so runs can be reproduced and
compared, and an unfinished run of the same configuration can be continued.

`run.json` is rewritten atomically after every step, so a killed run still says how far it got.
"""

from __future__ import annotations

import hashlib
import json
import logging
import platform
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from kagglekit._io import timestamp, utc_now, write_json
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
        except BaseException:
            self.status = f"failed in {name}"
            raise
        finally:
            self.timings[name] = round(self.timings.get(name, 0.0) + time.perf_counter() - started, 2)
            self.save()


def config_key(config: dict[str, Any]) -> str:
    """A short hash of what decides a run's results: a re-run with the same key continues that run."""
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def run_folder(runs_dir: Path, competition: str, name: str, key: str, fresh: bool = False) -> Path:
    """The unfinished run of the same configuration in `runs_dir/<competition>/` (to resume), else a new
    `<timestamp>_<name>` folder there."""
    if not fresh:
        for record in sorted((Path(runs_dir) / competition).glob("*/run.json"), reverse=True):
            saved = json.loads(record.read_text())
            if saved.get("config_key") == key and saved.get("status") != "finished":
                log.info("Resuming the unfinished run in %s (use --fresh to start over)", record.parent)
                return record.parent
    return Path(runs_dir) / competition / f"{timestamp()}_{name}"


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
