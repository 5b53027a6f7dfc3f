"""A competition's data through the official client, downloaded and extracted safely.

kagglekit adds what the client leaves to its user: a disk-space check, extraction that cannot write outside its
folder and is never left half done, and a manifest so a complete download is skipped and a partial one redone.
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
import zipfile
import zlib
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from rich.console import Console
from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn

from kagglekit._io import utc_now, write_json
from kagglekit._output import progress
from kagglekit.defaults import DOWNLOADS
from kagglekit.errors import KaggleError, PluginError
from kagglekit.kaggle.auth import client_errors, find_credentials, kaggle_client
from kagglekit.kaggle.retry import retrying
from kagglekit.registry import get_competition

if TYPE_CHECKING:
    from kaggle.api.kaggle_api_extended import KaggleApi

log = logging.getLogger(__name__)

MANIFEST = ".kagglekit-download.json"
_ABSOLUTE = re.compile(r"^([\\/]|[A-Za-z]:)")


def _size(n: float) -> str:
    if n < 1024:
        return f"{n:.0f} B"
    for unit in ("KB", "MB"):
        n /= 1024
        if n < 1024:
            return f"{n:.1f} {unit}"
    return f"{n / 1024:.1f} GB"


def _progress(console: Console | None) -> Progress:
    return progress(
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
    except PluginError:
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


def _extract_members(
    zf: zipfile.ZipFile, members: list[zipfile.ZipInfo], folder: Path, total: int, console: Console | None
) -> None:
    """Every file of the archive (`total` bytes) into `folder`, each one's CRC checked as it is read; then links."""
    with _progress(console) as progress:
        task = progress.add_task(f"Extracting {Path(str(zf.filename)).name}", total=total)
        for info in members:
            if not _is_symlink(info):
                zf.extract(info, folder)
                progress.advance(task, info.file_size)
    for info in filter(_is_symlink, members):  # after the files, so no file is written through a link
        (folder / info.filename).parent.mkdir(parents=True, exist_ok=True)
        os.symlink(_link_target(zf, info), folder / info.filename)


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
        try:
            _extract_members(zf, members, folder, total, console)
        except (zipfile.BadZipFile, zlib.error, EOFError) as error:  # a member's bytes fail their CRC, or cut short
            zf.close()
            shutil.rmtree(folder)
            archive.unlink()
            raise KaggleError(
                f"{archive} is corrupt ({error}); deleted it and the partial extraction, run the download again."
            ) from None
    files = {
        path.relative_to(folder).as_posix(): path.stat().st_size
        for path in sorted(folder.rglob("*"))
        if path.is_file() and not path.is_symlink()
    }
    write_json(folder / MANIFEST, {"competition": slug, "extracted": utc_now(), "files": files})
    if target.exists():  # an earlier download whose files were since deleted or changed
        replaced = target.with_name(f".{slug}.extract-replaced")
        os.replace(target, replaced)
        os.replace(folder, target)
        shutil.rmtree(replaced)
    else:
        os.replace(folder, target)


def download(competition: str, dest: Path = DOWNLOADS, console: Console | None = None) -> Path:
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
        retrying(lambda: _fetch(api, slug, archive, console), f"download '{slug}'")
    _extract(archive, target, slug, console)
    archive.unlink()
    return target
