"""Kaggle itself, through the official client: download a competition's data, submit a file, follow its score.

Every call to Kaggle goes through `kaggle`'s `KaggleApi`. kagglekit adds what the client leaves to its user: a
disk-space check, extraction that cannot write outside its folder and is never left half done, the submission
checks before a file costs one of the day's submissions, and the score recorded beside the run that made the file.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
import time
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from kagglekit.checks import CheckReport, check_submission
from kagglekit.competition import Competition
from kagglekit.files import write_json
from kagglekit.items import DataError, locate_data
from kagglekit.kaggle_auth import (
    CredentialsError,
    KaggleError,
    client_errors,
    find_credentials,
    kaggle_client,
)
from kagglekit.registry import get_competition

if TYPE_CHECKING:
    from kaggle.api.kaggle_api_extended import KaggleApi

log = logging.getLogger(__name__)

DEFAULT_DEST = Path("data")  # downloads land in data/<slug>/, like /kaggle/input/<slug>/ in a notebook
MANIFEST = ".kagglekit-download.json"
SIDECAR_SUFFIX = ".kaggle.json"
LIST_PAGE_SIZE = 50  # Kaggle lists newest first; one page covers the submissions still being scored
_ABSOLUTE = re.compile(r"^([\\/]|[A-Za-z]:)")


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _size(n: float) -> str:
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KB", "MB"):
        n /= 1024
        if n < 1024:
            return f"{n:.1f} {unit}"
    return f"{n / 1024:.1f} GB"


def _progress(console: Console | None) -> Progress:
    return Progress(
        TextColumn("{task.description}"), BarColumn(), DownloadColumn(), TransferSpeedColumn(), TimeRemainingColumn(),
        console=console,
    )  # fmt: skip


def _check_space(folder: Path, needed: int, what: str) -> None:
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise KaggleError(
            f"Not enough disk space to {what}: {_size(needed)} needed, {_size(free)} free in {folder}. "
            "Free some space or choose another --dest."
        )


# --- download ---


def competition_slug(competition: str) -> str:
    """The Kaggle slug of a registered competition (by name or slug); any other name is taken as a slug."""
    try:
        return get_competition(competition).slug
    except KeyError:
        return competition


def data_complete(folder: Path) -> bool:
    """Whether `folder` holds every file its download manifest lists, at the listed size."""
    try:
        files = json.loads((folder / MANIFEST).read_text())["files"]
    except (OSError, ValueError, KeyError):
        return False
    return all((folder / name).is_file() and (folder / name).stat().st_size == size for name, size in files.items())


def _is_symlink(info: zipfile.ZipInfo) -> bool:
    return stat.S_ISLNK(info.external_attr >> 16)


def _link_target(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> str:
    return archive.read(info).decode(errors="replace")


def _unsafe(archive: zipfile.ZipFile, info: zipfile.ZipInfo) -> str | None:
    """Why extracting this entry could write outside the target folder, or None if it cannot.

    A link may only point down from its own folder: with no absolute or '..' targets anywhere, no chain of links
    can leave the target either.
    """
    name = info.filename
    if _ABSOLUTE.match(name):
        return f"{name} (absolute path)"
    if ".." in re.split(r"[\\/]", name):
        return f"{name} ('..' in the path)"
    if _is_symlink(info):
        link = _link_target(archive, info)
        if _ABSOLUTE.match(link) or ".." in re.split(r"[\\/]", link):
            return f"{name} (symlink to {link}, outside its folder)"
    return None


@contextmanager
def _watch_size(path: Path, report: Callable[[int], None]) -> Iterator[None]:
    """Report the growing size of `path` from a thread while the body runs in this one (so Ctrl-C stops it)."""
    stop = threading.Event()

    def watch() -> None:
        while not stop.wait(0.2):
            report(path.stat().st_size if path.exists() else 0)

    watcher = threading.Thread(target=watch, daemon=True)
    watcher.start()
    try:
        yield
    finally:
        stop.set()
        watcher.join()
        report(path.stat().st_size if path.exists() else 0)


def _fetch(api: KaggleApi, slug: str, archive: Path, console: Console | None) -> None:
    """Download the competition's archive through the client unless a complete copy is already there.

    The client resumes a partial copy when the server allows ranges and else starts it over.
    """
    from kagglesdk.competitions.types.competition_api_service import ApiDownloadDataFilesRequest

    request = ApiDownloadDataFilesRequest()
    request.competition_name = slug
    with api.build_kaggle_client() as kaggle:
        response = kaggle.competitions.competition_api_client.download_data_files(request)  # follows the redirect
        if not api.download_needed(response, str(archive)):
            return
        size = int(response.headers.get("Content-Length") or 0)
        partial = archive.stat().st_size if archive.exists() else 0
        _check_space(archive.parent, size - partial, f"download the {_size(size)} archive")
        with _progress(console) as progress:
            task = progress.add_task(f"Downloading {archive.name}", total=size or None)
            with _watch_size(archive, lambda n: progress.update(task, completed=n)):
                api.download_file(response, str(archive), kaggle.http_client(), quiet=True, resume=True)


def _extract(archive: Path, target: Path, slug: str, console: Console | None) -> None:
    """Extract into a temporary sibling folder, write the manifest, then rename it into place."""
    try:
        zf = zipfile.ZipFile(archive)
    except zipfile.BadZipFile:
        archive.unlink()
        raise KaggleError(
            f"{archive} was not a valid zip archive and has been deleted; run the download again."
        ) from None
    with zf:
        members = zf.infolist()
        problems = [problem for info in members if (problem := _unsafe(zf, info))]
        if problems:
            raise KaggleError(
                f"Refusing to extract {archive}: {len(problems)} unsafe entr{'y' if len(problems) == 1 else 'ies'}, "
                f"e.g. {'; '.join(problems[:5])}. The archive is left in place for inspection."
            )
        total = sum(info.file_size for info in members)
        _check_space(target.parent, total, f"extract {archive.name} ({_size(total)})")
        folder = Path(tempfile.mkdtemp(prefix=f".{slug}.extract-", dir=target.parent))
        with _progress(console) as progress:
            task = progress.add_task(f"Extracting {archive.name}", total=total)
            for info in members:
                if not _is_symlink(info):
                    zf.extract(info, folder)
                    progress.advance(task, info.file_size)
            for info in filter(_is_symlink, members):  # after the files, so no file is written through a link
                (folder / info.filename).parent.mkdir(parents=True, exist_ok=True)
                os.symlink(_link_target(zf, info), folder / info.filename)
    files = {
        path.relative_to(folder).as_posix(): path.stat().st_size
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }
    write_json(folder / MANIFEST, {"competition": slug, "extracted": _now(), "files": files})
    if target.exists():  # an earlier download whose files were since deleted or changed
        replaced = target.with_name(f".{slug}.extract-replaced")
        os.replace(target, replaced)
        os.replace(folder, target)
        shutil.rmtree(replaced)
    else:
        os.replace(folder, target)


def download(competition: str, dest: Path = DEFAULT_DEST, console: Console | None = None) -> Path:
    """Download and extract a competition's data into `dest/<slug>` and return that folder.

    Safe to rerun: complete data is not fetched again, a partial archive is resumed or replaced, and an
    interrupted extraction is redone. `dest/<slug>` only ever appears complete, because extraction happens in a
    temporary folder that is renamed into place.
    """
    slug = competition_slug(competition)
    dest = Path(dest)
    target = dest / slug
    if data_complete(target):
        log.info("%s already holds the complete data of %s; nothing to download.", target, slug)
        return target
    if target.exists() and any(target.iterdir()) and not (target / MANIFEST).exists():
        raise KaggleError(
            f"{target} exists but was not written by `kagglekit download`; move it away or choose another --dest."
        )
    dest.mkdir(parents=True, exist_ok=True)
    for leftover in dest.glob(f".{slug}.extract-*"):  # extractions that were interrupted
        shutil.rmtree(leftover)
    archive = dest / f"{slug}.zip"
    credentials = find_credentials()
    api = kaggle_client(credentials)
    with client_errors(f"download '{slug}'", credentials, competition=slug):
        _fetch(api, slug, archive, console)
    _extract(archive, target, slug, console)
    archive.unlink()
    return target


# --- submit and follow the score ---


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
    try:
        return get_competition(competition)
    except KeyError as error:
        raise KaggleError(error.args[0]) from None


def _sample_submission(competition: Competition, data: Path | None) -> Path | None:
    """The sample submission the check compares ids with: from `data`, else from the default download folder or
    the notebook's input; None when neither has it (the check then says what it could not check)."""
    if data is not None:
        return locate_data(competition, data) / competition.sample_submission
    default = DEFAULT_DEST / competition.slug
    try:
        return locate_data(competition, default if default.is_dir() else None) / competition.sample_submission
    except DataError:
        return None


def _runs_by_submission(competition: Competition, runs_dir: Path) -> dict[Path, Path]:
    """Submission file -> the run.json whose `artifacts.submission` is that file."""
    found = {}
    for run_json in sorted((Path(runs_dir) / competition.name).glob("*/run.json")):
        try:
            made = json.loads(run_json.read_text()).get("artifacts", {}).get("submission")
        except (OSError, ValueError):
            continue
        if made:
            found[Path(made).resolve()] = run_json.resolve()
    return found


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
        record.updated = _now()
    return changed


def submit(
    file: Path,
    competition: str | None,
    message: str,
    force: bool = False,
    *,
    data: Path | None = None,
    runs_dir: Path = Path("runs"),
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
        raise FileNotFoundError(f"{file}: no such file.")
    spec = _competition_of(file, competition)
    report = check_submission(file, spec, _sample_submission(spec, data))
    if not report.ok and not force:
        raise SubmissionRefused(report)
    credentials = find_credentials()
    api = kaggle_client(credentials)
    run_json = _runs_by_submission(spec, runs_dir).get(file.resolve())
    with client_errors(f"reach '{spec.slug}'", credentials, competition=spec.slug):
        response = api.competition_submit(str(file), message, spec.slug, quiet=True)
        if response.message == api.COMPETITION_SUBMIT_UPLOAD_FAILED_MESSAGE:
            raise KaggleError(f"Uploading {file} to Kaggle failed; try again.")
        record = KaggleSubmission(
            competition=spec.slug, file=file.name, message=message, ref=response.ref, submitted=_now(),
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


def submissions(
    competition: str,
    submissions_dir: Path = Path("submissions"),
    runs_dir: Path = Path("runs"),
    refresh: bool = True,
) -> list[LocalSubmission]:
    """The files in `submissions/<competition>/` with their run and Kaggle's status and scores.

    With `refresh` and credentials, the status is brought up to date from Kaggle's submissions list (scores of
    pending submissions, private scores once the competition ends) and saved back to the sidecars and run records.
    """
    spec = get_competition(competition)
    runs = _runs_by_submission(spec, runs_dir)
    rows = []
    for file in sorted((Path(submissions_dir) / spec.name).glob("*.csv")):
        run_json = runs.get(file.resolve())
        rows.append(LocalSubmission(file, run_json.parent if run_json else None, _load_sidecar(file)))
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
            _save(row.file, row.kaggle, runs.get(row.file.resolve()))
    return rows
