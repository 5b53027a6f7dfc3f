"""Whether anyone watches the output live, which decides between progress bars and one line per step.

Kaggle keeps only the first megabyte of a batch notebook's output, and a redrawn progress bar written to a pipe
or a log is thousands of lines: bars are for terminals and notebooks being edited.
"""

from __future__ import annotations

import importlib.util
import os
import sys
from collections.abc import Iterable, Iterator
from typing import TypeVar

from rich import get_console
from rich.console import Console
from rich.progress import Progress, ProgressColumn

T = TypeVar("T")


def interactive() -> bool:
    """A terminal, or a notebook someone is editing (a live Jupyter kernel, as rich detects it: ipykernel merely
    imported, as in a test run, is not one) with ipywidgets to draw bars; not a pipe, a log file or a Kaggle batch
    run."""
    if os.environ.get("KAGGLE_KERNEL_RUN_TYPE") == "Batch":  # a saved version or a competition rerun
        return False
    # in a notebook rich draws bars with ipywidgets; without it each bar is only a warning to install it
    return sys.stdout.isatty() or (get_console().is_jupyter and importlib.util.find_spec("ipywidgets") is not None)


def progress(*columns: str | ProgressColumn, console: Console | None = None) -> Progress:
    """A rich `Progress` for a long step: drawn while someone watches (`interactive()`) and cleared when it stops,
    since the step's own log line says what it did; otherwise disabled, so a pipe or a log gets nothing from it,
    not even the empty line rich's `Progress.stop` prints on a console that is not a terminal."""
    return Progress(*columns, console=console, transient=True, disable=not interactive())


def track(sequence: Iterable[T], description: str, total: float | None = None) -> Iterator[T]:
    """`sequence`, with a `progress` bar (rich's default columns) while it is consumed: rich's `track`."""
    with progress(*Progress.get_default_columns()) as bar:
        yield from bar.track(sequence, total=total, description=description)
