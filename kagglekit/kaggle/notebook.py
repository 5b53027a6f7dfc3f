"""Running inside a Kaggle notebook: its read-only inputs, its one persistent output folder, and the
`submission.csv` a code competition scores. Reads only environment variables and files: cheap to import.

A notebook's only persistent output is `/kaggle/working` (`KAGGLEKIT_WORKING_DIR` moves it, for tests); its inputs
are mounted under `/kaggle/input` (`KAGGLEKIT_INPUT_ROOT` moves them).
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from kagglekit._io import atomic_write

KAGGLE_INPUT = Path("/kaggle/input")
KAGGLE_WORKING = Path("/kaggle/working")
SUBMISSION_NAME = "submission.csv"  # the file a code competition scores


def in_kaggle_notebook() -> bool:
    """Kaggle sets KAGGLE_KERNEL_RUN_TYPE (Interactive or Batch) in every notebook session."""
    return "KAGGLE_KERNEL_RUN_TYPE" in os.environ


def is_competition_rerun() -> bool:
    """Kaggle sets KAGGLE_IS_COMPETITION_RERUN while it reruns a code competition's notebook on the hidden test set
    (which can hold more images than the public one)."""
    return os.environ.get("KAGGLE_IS_COMPETITION_RERUN", "").strip().lower() not in ("", "0", "false")


def input_root() -> Path:
    """The notebook's read-only input mount."""
    return Path(os.environ.get("KAGGLEKIT_INPUT_ROOT", KAGGLE_INPUT))


def working_dir() -> Path | None:
    """The notebook's output folder, or None outside a Kaggle notebook."""
    if not in_kaggle_notebook():
        return None
    return Path(os.environ.get("KAGGLEKIT_WORKING_DIR", KAGGLE_WORKING))


def publish_submission(path: Path) -> Path | None:
    """Copy a submission to `<working>/submission.csv` in a notebook (replacing the previous one, atomically, so
    Kaggle never scores a half-written file); None elsewhere."""
    working = working_dir()
    if working is None:
        return None
    return atomic_write(working / SUBMISSION_NAME, lambda tmp: shutil.copyfile(path, tmp))


def export_member(run_folder: Path, member: str, dest: Path) -> Path:
    """Copy a one-member run's probabilities to `dest/members/<member>/`, where `kagglekit kaggle fanout` fetches
    them. They come from the run's `ensemble/` folder: for one member that is its own predictions, completed with
    the training prior for test images that could not be decoded, so every test id is present."""
    from kagglekit.errors import KaggleError

    source = Path(run_folder) / "ensemble"
    files = sorted([*source.glob("valid_*"), *source.glob("test_*")])
    if not files:
        raise KaggleError(f"{source} holds no probabilities; did the run finish?")
    target = Path(dest) / "members" / member
    target.mkdir(parents=True, exist_ok=True)
    for file in files:
        atomic_write(target / file.name, lambda tmp, f=file: shutil.copyfile(f, tmp))
    return target
