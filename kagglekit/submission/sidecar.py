"""The `<file>.source.json` sidecar beside each submission file kagglekit writes: which run made it, for which
test images. Light on purpose: `kagglekit check` reads it without importing numpy or pandas."""

from __future__ import annotations

import json
from pathlib import Path

SOURCE_SUFFIX = ".source.json"


def source_path(submission: Path) -> Path:
    """The sidecar `<file>.source.json` that records which run wrote a submission file."""
    return Path(submission).with_name(Path(submission).name + SOURCE_SUFFIX)


def submission_source(submission: Path) -> dict:
    """What the `.source.json` sidecar says about a submission file (empty for files written some other way)."""
    try:
        return json.loads(source_path(submission).read_text())
    except (OSError, ValueError):
        return {}


def submission_run(submission: Path) -> Path | None:
    """The run folder that wrote `submission`, from its sidecar (None for files written some other way)."""
    run = submission_source(submission).get("run")
    return Path(run) if run else None
