"""Finding a competition's files: a folder the user names, or the Kaggle notebook's inputs."""

from __future__ import annotations

from pathlib import Path

from kagglekit.competition import Competition
from kagglekit.errors import DataError
from kagglekit.kaggle.notebook import in_kaggle_notebook, input_root


def _is_data_dir(folder: Path, competition: Competition) -> bool:
    return (folder / competition.sample_submission).is_file() and (folder / competition.train_csv).is_file()


def _search(root: Path, competition: Competition, depth: int) -> Path | None:
    """The shallowest folder under `root` (at most `depth` levels down) holding the competition's files."""
    level = [root]
    for _ in range(depth + 1):
        for folder in sorted(level):
            if _is_data_dir(folder, competition):
                return folder
        level = [child for folder in level for child in folder.iterdir() if child.is_dir()]
    return None


def locate_data(competition: Competition, data: Path | None = None) -> Path:
    """The folder holding the competition's files: `data` if given, else the Kaggle notebook's input."""
    if data is not None:
        data = Path(data).expanduser()
        if not data.is_dir():
            raise DataError(f"--data {data}: no such folder.")
        found = _search(data, competition, depth=2)
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
        found = _search(root, competition, depth=3) if root.is_dir() else None
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
