"""Submitting a file through the official client and following its score, recorded beside the file and in the run
that made it; the submission checks run first, so a broken file never costs one of the day's submissions."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from kagglekit._io import utc_now, write_json
from kagglekit.competition import Competition
from kagglekit.data.locate import locate_data
from kagglekit.defaults import DOWNLOADS, runs_dir, submissions_dir
from kagglekit.errors import CredentialsError, DataError, KaggleError, SubmissionError
from kagglekit.kaggle.auth import client_errors, find_credentials, kaggle_client
from kagglekit.registry import get_competition
from kagglekit.runs import find_run
from kagglekit.submission.build import submission_run
from kagglekit.submission.checks import CheckReport, check_submission

if TYPE_CHECKING:
    from kaggle.api.kaggle_api_extended import KaggleApi

log = logging.getLogger(__name__)

SIDECAR_SUFFIX = ".kaggle.json"
LIST_PAGE_SIZE = 50  # Kaggle lists newest first; one page covers the submissions still being scored


@dataclass
class KaggleSubmission:
    """What Kaggle says about one submitted file; saved beside it as `<file>.kaggle.json`."""

    competition: str  # the Kaggle slug
    file: str
    message: str
    ref: int  # Kaggle's id of the submission
    submitted: str
    status: str = "pending"  # pending, complete or error
    public_score: str | None = None
    private_score: str | None = None
    error_description: str | None = None
    updated: str | None = None
    run: str | None = None  # the run folder that made the file

    @property
    def final(self) -> bool:
        return self.status in ("complete", "error")


@dataclass
class Submitted:
    """What `submit` did: Kaggle's verdict, the check it passed (or was forced past), and where both were saved."""

    record: KaggleSubmission
    check: CheckReport
    sidecar: Path
    run_record: Path | None  # the run.json that also got the result


@dataclass
class LocalSubmission:
    """A submission file with the run that made it and, once submitted, Kaggle's verdict."""

    file: Path
    run: Path | None
    kaggle: KaggleSubmission | None


class SubmissionRefused(KaggleError):
    """The file failed the submission checks; `report` says why."""

    def __init__(self, report: CheckReport) -> None:
        super().__init__(
            f"{report.path} failed {len(report.errors)} submission check(s): {'; '.join(report.errors)}. "
            "Fix it, or pass --force to submit anyway."
        )
        self.report = report


def sidecar_path(file: Path) -> Path:
    return Path(file).with_name(Path(file).name + SIDECAR_SUFFIX)


def _load_sidecar(file: Path) -> KaggleSubmission | None:
    path = sidecar_path(file)
    return KaggleSubmission(**json.loads(path.read_text())) if path.is_file() else None


def _competition_of(file: Path, competition: str | None) -> Competition:
    """The named competition, else the one whose `submissions/<competition>/` folder holds the file."""
    if competition is None:
        folder = file.absolute().parent
        if folder.parent.name != "submissions":
            raise KaggleError(
                f"Cannot tell which competition {file} is for; pass --competition (files under "
                "submissions/<competition>/ are recognised)."
            )
        competition = folder.name
    return get_competition(competition)


def _sample_submission(competition: Competition, data: Path | None) -> Path | None:
    """The sample submission the check compares ids with: from `data`, else from the default download folder or
    the notebook's input; None when neither has it (the check then says what it could not check)."""
    if data is not None:
        return locate_data(competition, data) / competition.sample_submission
    default = DOWNLOADS / competition.slug
    try:
        return locate_data(competition, default if default.is_dir() else None) / competition.sample_submission
    except DataError:
        return None


def _run_json(file: Path, competition: Competition, runs: Path | None) -> Path | None:
    """The run.json of the run that wrote `file`: named in the file's `.source.json` sidecar wherever the run
    lives, else found among the runs in `runs` (default: the runs folder) by its recorded submission."""
    run = submission_run(file)
    if run is not None and (run / "run.json").is_file():
        return run / "run.json"
    return find_run(runs or runs_dir(), competition.name, "submission", file)


def _save(file: Path, record: KaggleSubmission, run_json: Path | None) -> None:
    """Write the sidecar, and the `kaggle` entry of the run record that made the file."""
    write_json(sidecar_path(file), asdict(record))
    if run_json is not None:
        data: dict[str, Any] = json.loads(run_json.read_text())
        data["kaggle"] = {k: v for k, v in asdict(record).items() if k != "run"}
        write_json(run_json, data)


def _listed(api: KaggleApi, slug: str) -> dict[int, Any]:
    """Kaggle's newest submissions to the competition, by ref."""
    return {s.ref: s for s in api.competition_submissions(slug, page_size=LIST_PAGE_SIZE)}


def _apply(record: KaggleSubmission, submission: Any) -> bool:
    """Copy Kaggle's status and scores into the record; whether anything changed."""
    before = asdict(record)
    record.status = submission.status.name.lower()
    record.public_score = submission.public_score or None
    record.private_score = submission.private_score or None
    record.error_description = submission.error_description or None
    changed = asdict(record) != before
    if changed:
        record.updated = utc_now()
    return changed


def submit(
    file: Path,
    competition: str | None,
    message: str,
    force: bool = False,
    *,
    data: Path | None = None,
    runs: Path | None = None,
    timeout: float = 600.0,
    poll_interval: float = 10.0,
    console: Console | None = None,
) -> Submitted:
    """Check a submission file, submit it through the client, and wait (up to `timeout` seconds) for its score.

    The result goes to the sidecar `<file>.kaggle.json` and to the run record that made the file; it is saved
    right after submitting too, so a submission still being scored at the timeout can be followed up later with
    `submissions()`.
    """
    file = Path(file)
    if not file.is_file():
        raise SubmissionError(f"{file}: no such file.")
    spec = _competition_of(file, competition)
    report = check_submission(file, spec, _sample_submission(spec, data))
    if not report.ok and not force:
        raise SubmissionRefused(report)
    credentials = find_credentials()
    api = kaggle_client(credentials)
    run_json = _run_json(file, spec, runs)
    with client_errors(f"reach '{spec.slug}'", credentials, competition=spec.slug):
        response = api.competition_submit(str(file), message, spec.slug, quiet=True)
        if response.message == api.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE:
            raise KaggleError(f"Uploading {file} to Kaggle failed; try again.")
        record = KaggleSubmission(
            competition=spec.slug, file=file.name, message=message, ref=response.ref, submitted=utc_now(),
            run=str(run_json.parent) if run_json else None,
        )  # fmt: skip
        _save(file, record, run_json)
        deadline = time.monotonic() + timeout
        with (console or Console()).status(f"Waiting for Kaggle to score submission {record.ref}…"):
            while True:
                listed = _listed(api, spec.slug).get(record.ref)
                if listed is not None and _apply(record, listed):
                    _save(file, record, run_json)
                if record.final or time.monotonic() + poll_interval > deadline:
                    break
                time.sleep(poll_interval)
    return Submitted(record, report, sidecar_path(file), run_json)


def list_submissions(
    competition: str,
    folder: Path | None = None,
    runs: Path | None = None,
    refresh: bool = True,
) -> list[LocalSubmission]:
    """The files in `<folder>/<competition>/` (default: the submissions folder) with their run and Kaggle's status
    and scores.

    With `refresh` and credentials, the status is brought up to date from Kaggle's submissions list (scores of
    pending submissions, private scores once the competition ends) and saved back to the sidecars and run records.
    """
    spec = get_competition(competition)
    rows, run_jsons = [], {}
    for file in sorted((Path(folder or submissions_dir()) / spec.name).glob("*.csv")):
        run_jsons[file] = _run_json(file, spec, runs)
        rows.append(LocalSubmission(file, run_jsons[file].parent if run_jsons[file] else None, _load_sidecar(file)))
    if not (refresh and any(row.kaggle for row in rows)):
        return rows
    try:
        credentials = find_credentials()
    except CredentialsError:
        log.info("No Kaggle credentials: showing the status saved when each file was last checked.")
        return rows
    api = kaggle_client(credentials)
    with client_errors(f"reach '{spec.slug}'", credentials, competition=spec.slug):
        listed = _listed(api, spec.slug)
    for row in rows:
        if row.kaggle is not None and row.kaggle.ref in listed and _apply(row.kaggle, listed[row.kaggle.ref]):
            _save(row.file, row.kaggle, run_jsons[row.file])
    return rows
