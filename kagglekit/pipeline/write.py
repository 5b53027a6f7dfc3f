"""Stage 4: write the ensemble's submission, never over an earlier one, and check it before it is submitted."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from kagglekit.data.items import fingerprint
from kagglekit.defaults import submissions_dir
from kagglekit.pipeline.combine import EnsembleOutput
from kagglekit.pipeline.data import Data
from kagglekit.submission.build import to_submission, write_submission
from kagglekit.submission.checks import CheckReport, check_submission

PRIORS_COMPARED = 5  # the most recent comparable earlier submissions a new file is compared with


@dataclass
class SubmissionOutput:
    path: Path  # submissions/<competition>/<timestamp>_<name>.csv
    check: CheckReport
    frame: pd.DataFrame  # what was written


def write_and_check(
    ensemble: EnsembleOutput,
    data: Data | None,
    name: str,
    folder: Path | None = None,
    run_folder: Path | None = None,
) -> SubmissionOutput:
    """Write `<folder>/<competition>/<timestamp>_<name>.csv` from the ensemble's test probabilities and check it.

    With `data`, rows follow the sample submission and the check compares ids with it; the file is also compared
    with the most recent earlier submissions of the competition in `folder` (default: `submissions/`) that were made
    for the same test images (the sidecars' fingerprints, else the same id set).
    `run_folder` (the run that made it) is recorded beside the file (see `write_submission`).
    """
    competition = ensemble.competition
    folder = Path(folder or submissions_dir())
    template = data.items.sample_submission if data is not None else None
    frame = to_submission(ensemble.test, competition, template=template, thresholds=ensemble.cutoffs)
    priors = sorted((folder / competition.name).glob("*.csv"), reverse=True)  # newest first
    test_data = {"data": str(data.items.data_dir.resolve()), "fingerprint": fingerprint(data.items)} if data else None
    path = write_submission(frame, competition, name, folder, run=run_folder, test_data=test_data)
    classes = ensemble.test.vocab[competition.target_task]
    check = check_submission(path, competition, template, against=priors, classes=classes, compare=PRIORS_COMPARED)
    return SubmissionOutput(path, check, frame)
