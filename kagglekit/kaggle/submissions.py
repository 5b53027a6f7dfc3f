"""Submitting a file through the official client and following its score, recorded beside the file and in the run
that made it; the submission checks run first, so a broken file never costs one of the day's submissions."""

from __future__ import annotations

import contextlib
import json
import logging
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from kagglekit._io import timestamp, utc_now, write_json
from kagglekit.competition import Competition
from kagglekit.defaults import runs_dir, submissions_dir
from kagglekit.errors import CredentialsError, KaggleError, PluginError, SubmissionError
from kagglekit.kaggle.auth import Credentials, client_errors, find_credentials, kaggle_client
from kagglekit.kaggle.notebook import SUBMISSION_NAME
from kagglekit.kaggle.retry import retrying
from kagglekit.registry import get_competition
from kagglekit.runs import find_run
from kagglekit.submission.checks import CheckReport, check_submission
from kagglekit.submission.sidecar import find_sample_submission, submission_competition, submission_run

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
    kernel: str | None = None  # a code competition's notebook (owner/slug) whose output was submitted
    kernel_version: int | None = None

    @property
    def final(self) -> bool:
        return self.status in ("complete", "error")


@dataclass
class Submitted:
    """What `submit` did: Kaggle's verdict, the check it passed (or was forced past), and where both were saved."""

    record: KaggleSubmission
    check: CheckReport | None  # None for a notebook's submission (Kaggle writes and checks its file)
    sidecar: Path
    run_record: Path | None  # the run.json that also got the result
    unfollowed: str | None = None  # why Kaggle could no longer be asked for the score (the submission was made)


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
    """Kaggle's newest submissions to the competition, by ref (a transient failure is tried again)."""
    submissions = retrying(lambda: api.competition_submissions(slug, page_size=LIST_PAGE_SIZE), "list submissions")
    return {s.ref: s for s in submissions}


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


def _follow(
    api: KaggleApi, credentials: Credentials, record: KaggleSubmission, save: Callable[[], None], timeout: float,
    poll_interval: float, console: Console | None,
) -> str | None:  # fmt: skip
    """Poll Kaggle until `record` is scored or `timeout` seconds pass, saving each change. When Kaggle cannot be
    asked any more (transient errors outlasted their retries), the reason is returned: the submission was made."""
    deadline = time.monotonic() + timeout
    with (console or Console()).status(f"Waiting for Kaggle to score submission {record.ref}…"):
        while True:
            try:
                with client_errors(f"get the score of submission {record.ref}", credentials):
                    listed = _listed(api, record.competition).get(record.ref)
            except KaggleError as error:
                return str(error)
            if listed is not None and _apply(record, listed):
                save()
            if record.final or time.monotonic() + poll_interval > deadline:
                return None
            time.sleep(poll_interval)


def _never_sent(error: BaseException) -> bool:
    """Whether the connection was never made (refused, unreachable, timed out connecting), so the request cannot
    have arrived: urllib3's connect-time failure is somewhere in the chain of causes (under proxies too)."""
    from urllib3.exceptions import ConnectTimeoutError, NewConnectionError

    seen, pending = set(), [error]
    while pending:
        cause = pending.pop()
        if id(cause) in seen:
            continue
        seen.add(id(cause))
        if isinstance(cause, (NewConnectionError, ConnectTimeoutError)):
            return True
        nested = [getattr(cause, name, None) for name in ("reason", "original_error", "__cause__", "__context__")]
        pending += [c for c in [*nested, *cause.args] if isinstance(c, BaseException)]
    return False


@contextlib.contextmanager
def _creating(what: str, competition: str) -> Iterator[None]:
    """A connection dropped while Kaggle creates a submission leaves unknown whether it was made: say so."""
    from requests import ConnectionError, Timeout

    try:
        yield
    except (ConnectionError, Timeout) as error:
        if _never_sent(error):
            raise
        raise KaggleError(
            f"The connection to Kaggle dropped while submitting {what} ({type(error).__name__}); it may or may not "
            f"have been submitted. Check `kagglekit submissions {competition}` (or the competition's page) before "
            "submitting again."
        ) from None


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
    `submissions()`. A 429 or a dropped connection while polling is tried again after Kaggle's Retry-After; if
    Kaggle still cannot be asked, `unfollowed` says why (the submission was made and is recorded as pending).
    """
    file = Path(file)
    if not file.is_file():
        raise SubmissionError(f"{file}: no such file.")
    spec = submission_competition(file, competition)
    report = check_submission(file, spec, find_sample_submission(spec, file, data))
    if not report.ok and not force:
        raise SubmissionRefused(report)
    credentials = find_credentials()
    api = kaggle_client(credentials)
    run_json = _run_json(file, spec, runs)
    with client_errors(f"reach '{spec.slug}'", credentials, competition=spec.slug), _creating(str(file), spec.name):
        submitted = partial(api.competition_submit, str(file), message, spec.slug, quiet=True)
        response = retrying(submitted, f"submit {file.name}", repeatable=False)
    if response.message == api.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE:
        raise KaggleError(f"Uploading {file} to Kaggle failed; try again.")
    record = KaggleSubmission(
        competition=spec.slug, file=file.name, message=message, ref=response.ref, submitted=utc_now(),
        run=str(run_json.parent) if run_json else None,
    )  # fmt: skip
    _save(file, record, run_json)
    unfollowed = _follow(api, credentials, record, lambda: _save(file, record, run_json), timeout, poll_interval,
                         console)  # fmt: skip
    return Submitted(record, report, sidecar_path(file), run_json, unfollowed)


def _kernel_metadata(api: KaggleApi, kernel: str) -> Any:
    """Kaggle's metadata of a notebook (`ApiKernelMetadata`: its current version, its competition sources)."""
    from kagglesdk.kernels.types.kernels_api_service import ApiGetKernelRequest

    request = ApiGetKernelRequest()
    request.user_name, _, request.kernel_slug = kernel.partition("/")
    with api.build_kaggle_client() as kaggle:
        return retrying(lambda: kaggle.kernels.kernels_api_client.get_kernel(request), f"look up {kernel}").metadata


def _kernel_competition(metadata: Any, kernel: str, competition: str | None) -> str:
    """The Kaggle slug to submit to: the one given (a name or slug), else the notebook's one competition source."""
    if competition is not None:
        try:
            return get_competition(competition).slug
        except PluginError:
            return competition  # a competition kagglekit has no plug-in for: its slug
    sources = list(metadata.competition_data_sources or [])
    if len(sources) != 1:
        attached = f"is attached to {len(sources)} competitions ({', '.join(sources)})" if sources else "has none"
        raise KaggleError(f"Notebook {kernel} {attached} as input; name the one to submit to with --competition.")
    return sources[0]


def _check_finished(api: KaggleApi, kernel: str, version: int) -> None:
    """Refuse to submit a notebook whose latest version is still running or failed: Kaggle would only reject it."""
    status = retrying(lambda: api.kernels_status(kernel), f"get the status of {kernel}")
    state = status.status.name.lower()
    if state == "error":
        failure = status.failure_message or "no message"
        raise KaggleError(f"Version {version} of notebook {kernel} failed on Kaggle ({failure}); fix it and push a "
                          "new version before submitting.")  # fmt: skip
    if state != "complete":
        raise KaggleError(f"Version {version} of notebook {kernel} is {state} on Kaggle; submit it once it has "
                          f"finished (`kaggle kernels status {kernel}`).")  # fmt: skip


def kernel_record_path(folder: Path | None, competition: str, kernel: str, version: int) -> Path:
    """Where a notebook's submission is recorded: `<folder>/<competition>/<stamp>_kernel-<slug>-v<N>` (its sidecar
    `<...>.kaggle.json`), beside the file submissions, so `kagglekit submissions` lists both."""
    try:
        name = get_competition(competition).name
    except PluginError:
        name = competition
    return Path(folder or submissions_dir()) / name / f"{timestamp()}_kernel-{kernel.split('/')[1]}-v{version}"


def submit_kernel(
    kernel: str,
    message: str,
    competition: str | None = None,
    version: int | None = None,
    *,
    file_name: str = SUBMISSION_NAME,
    folder: Path | None = None,
    timeout: float = 600.0,
    poll_interval: float = 10.0,
    console: Console | None = None,
) -> Submitted:
    """Submit a notebook's output to a code competition, as `kaggle competitions submit -k OWNER/SLUG -v N -f
    submission.csv` does, and wait (up to `timeout` seconds) for the score of Kaggle's rerun on the hidden test set.

    The competition defaults to the notebook's one competition source, the version to its current one (whose run
    must have finished). The result is recorded in `submissions/<competition>/<stamp>_kernel-<slug>-v<N>.kaggle.json`
    and refreshed by `list_submissions` like a file submission's.
    """
    if kernel.count("/") != 1 or not all(kernel.split("/")):
        raise KaggleError(f"--kernel {kernel!r}: name the notebook as OWNER/SLUG, as in its URL.")
    credentials = find_credentials()
    api = kaggle_client(credentials)
    with client_errors(f"look up notebook {kernel}", credentials):
        metadata = _kernel_metadata(api, kernel)
        slug = _kernel_competition(metadata, kernel, competition)
        current = int(metadata.current_version_number or 0)
        version = version or current
        if version == current:
            _check_finished(api, kernel, version)
    with client_errors(f"reach '{slug}'", credentials, competition=slug), _creating(f"notebook {kernel}", slug):
        submitted = partial(api.competition_submit_code, file_name, message, slug, kernel, version, quiet=True)
        response = retrying(submitted, f"submit notebook {kernel}", repeatable=False)
    record = KaggleSubmission(competition=slug, file=file_name, message=message, ref=response.ref,
                              submitted=utc_now(), kernel=kernel, kernel_version=version)  # fmt: skip
    path = kernel_record_path(folder, slug, kernel, version)
    _save(path, record, None)
    unfollowed = _follow(api, credentials, record, lambda: _save(path, record, None), timeout, poll_interval, console)
    return Submitted(record, None, sidecar_path(path), None, unfollowed)


def list_submissions(
    competition: str,
    folder: Path | None = None,
    runs: Path | None = None,
    refresh: bool = True,
) -> list[LocalSubmission]:
    """The files in `<folder>/<competition>/` (default: the submissions folder), and the notebooks submitted to it,
    with their run and Kaggle's status and scores.

    With `refresh` and credentials, the status is brought up to date from Kaggle's submissions list (scores of
    pending submissions, private scores once the competition ends) and saved back to the sidecars and run records.
    """
    spec = get_competition(competition)
    rows, run_jsons = [], {}
    where = Path(folder or submissions_dir()) / spec.name
    notebooks = [p.with_name(p.name.removesuffix(SIDECAR_SUFFIX)) for p in where.glob(f"*_kernel-*{SIDECAR_SUFFIX}")]
    for file in sorted([*where.glob("*.csv"), *notebooks]):
        run_jsons[file] = _run_json(file, spec, runs) if file.suffix == ".csv" else None
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
