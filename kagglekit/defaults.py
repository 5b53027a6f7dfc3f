"""Where kagglekit keeps things when a command is not told otherwise: one source for every command.

Outside Kaggle: `runs/`, `submissions/` and `data/` in the current folder, and a cache under
`$KAGGLEKIT_CACHE`, else `$XDG_CACHE_HOME/kagglekit`, else `~/.cache/kagglekit`. Inside a Kaggle notebook runs and
submissions go under its working folder (`/kaggle/working`), the only output that outlives the session.
"""

from __future__ import annotations

import os
from pathlib import Path

from kagglekit.kaggle.notebook import working_dir

DOWNLOADS = Path("data")  # `kagglekit download` puts a competition in data/<slug>/, like /kaggle/input/<slug>/


def runs_dir() -> Path:
    """The folder of run records: `runs/`, or `<working>/runs` in a Kaggle notebook."""
    working = working_dir()
    return working / "runs" if working else Path("runs")


def submissions_dir() -> Path:
    """The folder of submission files: `submissions/`, or `<working>/submissions` in a Kaggle notebook."""
    working = working_dir()
    return working / "submissions" if working else Path("submissions")


def cache_root() -> Path:
    """Generated samples and image caches: $KAGGLEKIT_CACHE, else $XDG_CACHE_HOME/kagglekit, else ~/.cache."""
    if "KAGGLEKIT_CACHE" in os.environ:
        return Path(os.environ["KAGGLEKIT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kagglekit"
