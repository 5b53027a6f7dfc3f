"""A submission CSV read as text, cell by cell, with the file line of every row.

The checks read files with the standard `csv` module rather than pandas: `kagglekit check` must answer in a
fraction of a second (importing pandas alone takes longer), every cell must stay the exact text the grader will
parse, and every problem must name its real line, which blank lines and quoted line breaks would shift.
Blank lines are skipped, as pandas (and so Kaggle's grader) skips them.
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, TypeVar

from kagglekit.errors import SubmissionError

if TYPE_CHECKING:
    import pandas as pd

MAX_LISTED = 5  # rows (or names) a message lists before "and N more"
T = TypeVar("T")


def listed(items: Sequence[T], describe: Callable[[T], str] = str) -> str:
    """'a, b, c, d, e and 4 more': the first `MAX_LISTED` items, described, and how many more there are."""
    more = f" and {len(items) - MAX_LISTED} more" if len(items) > MAX_LISTED else ""
    return ", ".join(map(describe, items[:MAX_LISTED])) + more


@dataclass
class Table:
    """A CSV's header and rows of strings; `lines[i]` is the file line row `i` ends on (the header is line 1)."""

    columns: list[str]
    rows: list[list[str]]
    lines: list[int]

    def __len__(self) -> int:
        return len(self.rows)

    def column(self, name: str) -> list[str]:
        """The cells of column `name`, one per row (the first such column if the header repeats it)."""
        index = self.columns.index(name)
        return [row[index] for row in self.rows]

    def lines_of(self, rows: Sequence[int], id_column: str | None = None) -> str:
        """'line 3 (id x), line 9 (id y) and 4 more' for rows `rows` (indices into `self.rows`)."""
        ids = self.column(id_column) if id_column in self.columns else None
        return listed(rows, lambda r: f"line {self.lines[r]}" + (f" (id {ids[r]})" if ids else ""))

    def ragged(self) -> list[int]:
        """Rows whose number of cells differs from the header's."""
        return [i for i, row in enumerate(self.rows) if len(row) != len(self.columns)]

    @classmethod
    def from_frame(cls, frame: pd.DataFrame) -> Table:
        """A data frame (e.g. a sample submission already read) as text cells, lines numbered as if written."""
        rows = frame.astype(str).to_numpy().tolist()
        return cls([str(c) for c in frame.columns], rows, list(range(2, len(rows) + 2)))


def read_table(path: Path) -> Table:
    """Read `path` as UTF-8 CSV (a byte-order mark is ignored).

    Raises `SubmissionError` ("cannot be read as CSV (why)") for a missing, empty, binary or malformed file.
    """
    try:
        with open(path, newline="", encoding="utf-8-sig") as file:
            reader = csv.reader(file)
            columns = next((row for row in reader if row), None)  # blank lines before the header are skipped too
            if columns is None:
                raise SubmissionError("cannot be read as CSV (the file is empty)")
            rows, lines = [], []
            for row in reader:
                if row:
                    rows.append(row)
                    lines.append(reader.line_num)
    except (OSError, UnicodeDecodeError, csv.Error) as error:
        raise SubmissionError(f"cannot be read as CSV ({error})") from None
    return Table(columns, rows, lines)
