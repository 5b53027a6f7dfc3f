"""Matching CSV ids to image files, and saying where to look when an id has no file.

DICOM competitions key their rows by SOPInstanceUID, which a file carries twice: in its header and, usually, in its
name (`<SOPInstanceUID>.dcm`, `<SOPInstanceUID>-c.dcm`). A converter that rewrites UIDs makes the two disagree, so a
file is matched by either; when they point an id at different files, the header wins and the conflict is reported.
"""

from __future__ import annotations

import difflib
import logging
import os
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from kagglekit._output import track
from kagglekit.errors import DicomReadError

log = logging.getLogger(__name__)

UID_IN_NAME = re.compile(r"\d+(?:\.\d+)+")  # a DICOM UID (digits and dots, PS3.5 9.1) at the start of a file name
SIMILAR = 0.6  # difflib ratio above which a folder's name counts as similar to a searched one
LISTED = 3


@dataclass
class DicomFiles:
    """The DICOM files under a folder, by the SOPInstanceUID in their header and by the UID their name starts with."""

    folder: Path
    by_header: dict[str, Path] = field(default_factory=dict)
    by_name: dict[str, Path] = field(default_factory=dict)
    renamed: list[str] = field(default_factory=list)  # "<file> holds <uid>" where the name disagrees with the header
    conflicts: list[str] = field(default_factory=list)


def index_dicoms(folder: Path) -> DicomFiles:
    """Every `.dcm` file under `folder` (recursively), by header UID and by file-name UID.

    A file whose header cannot be read is still found by its name (decoding it later reports why it fails).
    """
    from kagglekit.data.dicom import dicom_uid

    files = DicomFiles(folder)
    unreadable = []
    paths = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() == ".dcm")
    for path in track(paths, description=f"Reading DICOM headers in {folder.name}/"):
        named = UID_IN_NAME.match(path.name)
        if named:
            files.by_name.setdefault(named.group(), path)
        try:
            uid = dicom_uid(path)
        except DicomReadError as error:
            unreadable.append(str(error))
            continue
        if uid in files.by_header:
            files.conflicts.append(f"{path.name} and {files.by_header[uid].name} both hold {uid} (using the first)")
        files.by_header.setdefault(uid, path)
        if not named or named.group() != uid:
            files.renamed.append(f"{path.name} holds {uid}")
    if files.renamed:
        log.warning("%d DICOM file name(s) disagree with their SOPInstanceUID (ids are matched by either): %s",
                    len(files.renamed), "; ".join(files.renamed[:LISTED]))  # fmt: skip
    if unreadable:
        log.warning("%d DICOM file(s) have no readable SOPInstanceUID (matched by file name only): %s",
                    len(unreadable), "; ".join(unreadable[:LISTED]))  # fmt: skip
    return files


def match_dicoms(ids: Sequence[str], files: DicomFiles) -> list[Path | None]:
    """The file of each id: the one whose header holds it, else the one whose name starts with it (None: neither).

    Reported as conflicts: an id whose header match and name match are different files (the header's is used), a
    file that two ids claim (one by its header, one by its name), two files with the same header UID.
    """
    paths, claimed, conflicts = [], {}, list(files.conflicts)
    for image_id in ids:
        by_header, by_name = files.by_header.get(image_id), files.by_name.get(image_id)
        if by_header and by_name and by_header != by_name:
            conflicts.append(f"{image_id} is in the header of {by_header.name} and names {by_name.name} (using "
                             f"{by_header.name})")  # fmt: skip
        path = by_header or by_name
        if path is not None and claimed.setdefault(path, image_id) != image_id:
            conflicts.append(f"{path.name} is matched by both {claimed[path]} and {image_id}")
        paths.append(path)
    if conflicts:
        log.warning("%d conflict(s) matching ids to DICOM files under %s/: %s", len(conflicts), files.folder.name,
                    "; ".join(conflicts[:LISTED]))  # fmt: skip
    return paths


def _similar_folders(data_dir: Path, absent: list[Path], searched: list[Path]) -> list[str]:
    """Folders under `data_dir` (two levels) named like an `absent` one, other than the `searched` folders."""
    names = {folder.name.lower() for folder in absent}
    found = []
    for folder in sorted(p for pattern in ("*", "*/*") for p in data_dir.glob(pattern) if p.is_dir()):
        name = folder.name.lower()
        if folder in searched or name.startswith("."):
            continue
        if any(n in name or name in n or difflib.SequenceMatcher(None, n, name).ratio() >= SIMILAR for n in names):
            found.append(f"{folder.relative_to(data_dir)}/")
    return found


def _found_elsewhere(data_dir: Path, missing: Sequence[Path]) -> dict[str, int]:
    """Folders (relative to `data_dir`) holding files named like the missing ones, with how many each holds."""
    wanted: dict[str, set[Path]] = {}
    for path in missing:
        wanted.setdefault(path.name, set()).add(path.parent)
    folders: dict[str, int] = {}
    for root, _, names in os.walk(data_dir):
        for name in names:
            if name in wanted and Path(root) not in wanted[name]:
                key = f"{Path(root).relative_to(data_dir)}/"
                folders[key] = folders.get(key, 0) + 1
    return folders


def _folder_of(path: Path) -> Path:
    """The folder a path is looked for in: its parent, or for a pattern (`test/**/<uid>*`) the part before it."""
    wild = next((i for i, part in enumerate(path.parts) if "*" in part), None)
    return path.parent if wild is None else Path(*path.parts[:wild])


def _top_missing(folder: Path, data_dir: Path) -> Path | None:
    """The outermost folder between `data_dir` and `folder` that does not exist (None: `folder` exists)."""
    top = None
    while folder != data_dir and folder.is_relative_to(data_dir) and not folder.is_dir():
        top, folder = folder, folder.parent
    return top


def where_to_look(data_dir: Path, missing: Sequence[Path]) -> str:
    """One sentence for an error about missing files: the folders searched, similarly named folders that exist, and
    where files of those names are (a renamed or nested folder)."""
    data_dir = Path(data_dir)
    searched = sorted({_folder_of(path) for path in missing})
    shown = [f"{p.relative_to(data_dir)}/" if p.is_relative_to(data_dir) else f"{p}/" for p in searched]
    more = f" and {len(shown) - LISTED} more" if len(shown) > LISTED else ""
    text = f"Searched {', '.join(shown[:LISTED])}{more} in {data_dir}"
    absent = sorted({top for p in searched if (top := _top_missing(p, data_dir)) is not None})
    if absent:
        text += f" ({', '.join(f'{p.relative_to(data_dir)}/' for p in absent[:LISTED])} missing)"
        similar = _similar_folders(data_dir, absent, searched)
        text += f"; similarly named: {', '.join(similar[: LISTED * 2])}" if similar else "; no similarly named folder"
    elsewhere = _found_elsewhere(data_dir, [p for p in missing if _folder_of(p) == p.parent])
    if elsewhere:
        where = ", ".join(f"{n} in {folder}" for folder, n in sorted(elsewhere.items(), key=lambda kv: -kv[1])[:LISTED])
        text += f"; files of those names are elsewhere ({where}): move or link them where they are expected"
    return text + "."
