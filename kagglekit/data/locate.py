"""Finding a competition's files: a folder the user names, or the Kaggle notebook's inputs."""

from __future__ import annotations

import logging
from pathlib import Path

from kagglekit.competition import Competition
from kagglekit.errors import DataError
from kagglekit.kaggle.notebook import in_kaggle_notebook, input_root

log = logging.getLogger(__name__)


def _is_data_dir(folder: Path, competition: Competition) -> bool:
    return (folder / competition.sample_submission).is_file() and (folder / competition.train_csv).is_file()


def _subfolders(folder: Path) -> list[Path]:
    try:
        return sorted(child for child in folder.iterdir() if child.is_dir() and not child.name.startswith("."))
    except OSError:  # unreadable: nothing to find there
        return []


def _search(root: Path, competition: Competition, depth: int) -> list[Path]:
    """Every folder under `root` (at most `depth` levels down) holding the competition's files; a folder inside one
    that does is not searched (a nested copy of the same download)."""
    found, level = [], [root]
    for remaining in range(depth, -1, -1):
        found += [folder for folder in level if _is_data_dir(folder, competition)]
        if not remaining:
            break
        level = [child for folder in level if folder not in found for child in _subfolders(folder)]
    return found


def _one(found: list[Path], where: str, competition: Competition) -> Path | None:
    """The only folder found (its choice logged), None when none was, a `DataError` listing them when several were."""
    if len(found) > 1:
        listed = ", ".join(map(str, found))
        raise DataError(f"{where} holds {len(found)} folders with {competition.name}'s files ({listed}); give the "
                        "one to use as --data (data= in a notebook).")  # fmt: skip
    if found:
        log.info("Using the %s data in %s", competition.name, found[0])
    return found[0] if found else None


def locate_data(competition: Competition, data: Path | None = None) -> Path:
    """The folder holding the competition's files: `data` if given (or the one folder below it, up to two levels
    down, that holds them), else the Kaggle notebook's input. Several candidates are a `DataError` listing them."""
    if data is not None:
        data = Path(data).expanduser()
        if data.is_file():
            raise DataError(f"--data {data} is a file; point --data at the folder holding {competition.train_csv} "
                            f"and {competition.sample_submission}.")  # fmt: skip
        if not data.is_dir():
            raise DataError(f"--data {data}: no such folder.")
        found = _one(_search(data, competition, depth=2), f"--data {data}", competition)
        if found is None:
            raise DataError(
                f"--data {data}: found no folder containing both {competition.train_csv} and "
                f"{competition.sample_submission}. Point --data at the extracted Kaggle download of "
                f"'{competition.slug}'."
            )
        return found
    if in_kaggle_notebook():
        root = input_root()
        for candidate in (root / "competitions" / competition.slug, root / competition.slug):
            if _is_data_dir(candidate, competition):
                return candidate
        found = _one(_search(root, competition, depth=3), f"The notebook's input {root}", competition) if (
            root.is_dir()) else None  # fmt: skip
        if found is not None:
            return found
        raise DataError(
            f"Running in a Kaggle notebook but no input under {root} holds {competition.sample_submission}. "
            f"Add the '{competition.slug}' competition as an input of this notebook."
        )
    raise DataError(
        f"No data for {competition.name}. Either try the bundled sample (`kagglekit run {competition.name} "
        f"--sample`), or point at the extracted Kaggle download with `--data DIR` (get it with "
        f"`kagglekit download {competition.name}` after setting up Kaggle credentials in "
        f"~/.kaggle/kaggle.json and accepting the competition's rules on the website; it lands in "
        f"data/{competition.slug})."
    )
