"""Checks that run before any training: what would otherwise fail after minutes or hours of it, in one line.

`check_outputs` runs before anything is read or written (the folders a run writes, the run's name, the answers
file); `check_recipe` once the data is read and before the first member trains (every member's batch fits its
training rows, its architecture, weights and tasks exist, the answers cover the test ids); `explain_full_disk` turns
a disk that fills up during the run into one line that says the run resumes once space is freed.
"""

from __future__ import annotations

import errno
import logging
import math
import shutil
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path

import pandas as pd

from kagglekit.competition import Competition
from kagglekit.errors import DataError, RecipeError
from kagglekit.pipeline.data import Data
from kagglekit.recipe import Member, Recipe

log = logging.getLogger(__name__)

MB = 2**20
MIN_FREE = 100 * MB  # less than one checkpoint of a resnet18 (weights and optimizer state): refused
LOW_FREE = 2048 * MB  # a GPU recipe's checkpoints and exported members can need this much: a warning
FULL = ("No space left", "inline_container", "PytorchStreamWriter", "file write failed")  # torch's writer on ENOSPC
_WHY = {
    errno.EROFS: "read-only file system", errno.EACCES: "permission denied", errno.EPERM: "permission denied",
    errno.ENOSPC: "no space left on the device", errno.EDQUOT: "disk quota exceeded",
    errno.EEXIST: "a file is in the way", errno.ENOTDIR: "a file is in the way",
}  # fmt: skip


def check_writable(folder: Path, option: str) -> None:
    """Create `folder` if needed and write (then drop) a nameless file in it; refuse a disk that is nearly full."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as error:
        why = _WHY.get(error.errno, error.strerror or str(error))
        raise DataError(
            f"{option} {folder}: cannot write there ({why}). Choose a writable folder with {option}."
        ) from None
    free = shutil.disk_usage(folder).free
    if free < MIN_FREE:
        raise DataError(f"{option} {folder}: only {free / MB:.0f} MB free on its disk, too little for one "
                        f"checkpoint (at least {MIN_FREE // MB} MB). Free some space, or choose another folder with "
                        f"{option}.")  # fmt: skip
    if free < LOW_FREE:
        log.warning("%s %s: only %.0f MB free; a long run may fill the disk (it resumes once space is freed).",
                    option, folder, free / MB)  # fmt: skip


def _answers(path: Path, competition: Competition) -> pd.DataFrame:
    """The answers CSV (id column and the target task's column), or a `DataError` saying what is wrong with it."""
    column = competition.tasks[competition.target_task].column
    if not Path(path).is_file():
        raise DataError(f"--answers {path}: {'a folder' if Path(path).is_dir() else 'no such file'}; give a CSV of "
                        f"test answers ({competition.id_column},{column}).")  # fmt: skip
    try:
        answers = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, ValueError, UnicodeDecodeError) as error:
        raise DataError(f"--answers {path}: cannot be read as CSV ({error}).") from None
    missing = [c for c in (competition.id_column, column) if c not in answers.columns]
    if missing:
        raise DataError(f"--answers {path}: no column {', '.join(missing)}; it needs {competition.id_column},{column}.")
    return answers


def check_outputs(competition: Competition, folders: dict[str, Path], name: str, answers: Path | None = None) -> None:
    """Before anything is read or trained: every folder in `folders` (option -> path, e.g. `--runs`) is writable with
    room for checkpoints, `name` can name a file, and the answers file is a CSV with the columns to score by."""
    if not name or name in (".", "..") or any(c in name for c in "/\\\0"):
        raise DataError(f"--name {name!r}: it names a folder and a file, so it cannot be empty or hold '/' or '\\'.")
    for option, folder in folders.items():
        check_writable(Path(folder).expanduser(), option)
    if answers is not None:
        _answers(answers, competition)


def _training_rows(member: Member, recipe: Recipe, rows: int) -> tuple[int, str]:
    """The fewest rows any of the member's models trains on, and how they are held out."""
    if member.folds:
        if rows < member.folds:
            raise DataError(f"member {member.name!r}: {member.folds} folds need at least {member.folds} usable "
                            f"training rows; there are {rows}. Lower folds.")  # fmt: skip
        return rows - math.ceil(rows / member.folds), f"{member.folds} folds"
    return rows - math.ceil(rows * recipe.valid_pct), f"valid_pct {recipe.valid_pct}"


def _architecture(member: Member) -> None:
    import timm

    if not timm.is_model(member.arch):
        import difflib

        near = difflib.get_close_matches(member.arch.split(".")[0], timm.list_models(), n=3)
        raise RecipeError(f"member {member.name!r}: timm has no architecture {member.arch!r}" +
                          (f"; did you mean {', '.join(near)}?" if near else "."))  # fmt: skip


def check_recipe(recipe: Recipe, data: Data, answers: Path | None = None) -> None:
    """Before the first member trains: what would otherwise fail when a later member starts, or after training."""
    from kagglekit.train.heads import make_heads
    from kagglekit.train.weights import weights_file

    rows = len(data.items.train)
    for member in recipe.members:
        fewest, held_out = _training_rows(member, recipe, rows)
        if fewest < 1:
            raise DataError(f"{rows} usable training row(s) leave none to train on with {held_out}; add rows (see "
                            "the skipped rows above) or lower valid_pct.")  # fmt: skip
        if fewest < member.batch_size:
            raise RecipeError(
                f"member {member.name!r}: batch_size {member.batch_size} is larger than its {fewest} training rows "
                f"({rows} usable rows, {held_out}), so no optimizer step would run. Lower batch_size (and accum)."
            )
        _architecture(member)
        make_heads(data.competition, data.vocab, member)  # its tasks are the competition's
        if isinstance(member.pretrained, str):
            weights_file(member.pretrained, member.arch)
    if answers is not None:
        competition = data.competition
        known = set(_answers(answers, competition)[competition.id_column])
        unknown = known - set(data.items.test["id"]) - set(data.undecodable_test["id"])
        if unknown:
            raise DataError(f"--answers {answers}: {len(unknown)} id(s) are not in {competition.sample_submission}, "
                            f"e.g. {sorted(unknown)[0]}; give the answers of these test images.")  # fmt: skip


def _disk_full(error: BaseException | None) -> BaseException | None:
    """The error in `error`'s chain (itself, or what caused it) that says a disk or quota is full, else None; torch's
    writer reports a full disk as an I/O failure of its archive."""
    while error is not None:
        if getattr(error, "errno", None) in (errno.ENOSPC, errno.EDQUOT) or any(sign in str(error) for sign in FULL):
            return error
        error = error.__cause__ or error.__context__
    return None


@contextmanager
def explain_full_disk(folders: Sequence[Path]) -> Iterator[None]:
    """A disk (or quota) that fills up inside the block becomes a `DataError` saying what to free and that the same
    command resumes; anything else passes through."""
    try:
        yield
    except Exception as error:
        full = _disk_full(error)
        if full is None:
            raise
        free = ", ".join(f"{folder} ({shutil.disk_usage(folder).free / MB:.0f} MB free)" for folder in folders
                         if Path(folder).is_dir())  # fmt: skip
        what = " ".join(line.strip() for line in str(full).splitlines() if line.strip())[:300]
        raise DataError(f"The disk filled up while the run was writing ({what}). Free "
                        f"space where it writes ({free}), then run the same command again: it resumes after the last "
                        "finished epoch and keeps finished members.") from error  # fmt: skip
