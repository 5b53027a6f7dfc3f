"""Whether anyone watches the output live, which decides between progress bars and one line per step.

Kaggle keeps only the first megabyte of a batch notebook's output, and a redrawn progress bar written to a pipe
or a log is thousands of lines: bars are for terminals and notebooks being edited.
"""

from __future__ import annotations

import os
import sys


def interactive() -> bool:
    """A terminal, or a notebook someone is editing; not a pipe, a log file or a Kaggle batch run."""
    if os.environ.get("KAGGLE_KERNEL_RUN_TYPE") == "Batch":  # a saved version or a competition rerun
        return False
    return sys.stdout.isatty() or "ipykernel" in sys.modules
