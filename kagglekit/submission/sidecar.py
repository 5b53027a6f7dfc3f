"""What a submission file is for: the `<file>.source.json` sidecar beside each file kagglekit writes (which run
made it, for which competition and test images), and from it the competition and the sample submission to check
the file against. Light on purpose: `kagglekit check` uses it without importing numpy or pandas."""

from __future__ import annotations

import json
from pathlib import Path

from kagglekit.competition import Competition
from kagglekit.data.locate import locate_data
from kagglekit.defaults import DOWNLOADS
from kagglekit.errors import DataError, SubmissionError
from kagglekit.registry import get_competition

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


def submission_competition(submission: Path, name: str | None = None) -> Competition:
    """The competition `name`, else the one the file's sidecar records, else the one whose `submissions/<name>/`
    folder holds the file. Raises `SubmissionError` when none of them says."""
    name = name or submission_source(submission).get("competition")
    if name is None:
        folder = Path(submission).absolute().parent
        if folder.parent.name != "submissions":
            raise SubmissionError(f"Cannot tell which competition {submission} is for; pass --competition (files "
                                  "under submissions/<competition>/ are recognised).")  # fmt: skip
        name = folder.name
    return get_competition(name)


def find_sample_submission(competition: Competition, submission: Path, data: Path | None = None) -> Path | None:
    """The sample submission to check `submission` against: in the data folder `data` if given (a `DataError` if
    it holds no competition files); else in the folder of the test images the file was made for (its sidecar);
    else in the default download folder or the Kaggle notebook's input; None when none of them has it."""
    if data is not None:
        return locate_data(competition, data) / competition.sample_submission
    made_for = (submission_source(submission).get("test_data") or {}).get("data")
    default = DOWNLOADS / competition.slug
    candidates = [Path(made_for)] if made_for and Path(made_for).is_dir() else []
    candidates.append(default if default.is_dir() else None)  # None: the notebook's input
    for folder in candidates:
        try:
            return locate_data(competition, folder) / competition.sample_submission
        except DataError:
            continue
    return None
