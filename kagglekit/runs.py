"""The run record: config, metrics, timings and artifacts of one run, so runs can be reproduced and compared.

`run.json` is rewritten atomically after every step, so a killed run still says how far it got.
"""

from __future__ import annotations

import json
import platform
import sys
import time
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timezone
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Any

from kagglekit.distributed import is_main_process
from kagglekit.files import write_json

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
    started: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))
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
