"""Sanity checks of a submission file before it costs one of the day's Kaggle submissions.

Every problem names the CSV line it is on (line 1 is the header) and what to do. Errors are what Kaggle's grader
rejects (a missing or unexpected column, missing, unknown or repeated ids, empty or non-numeric cells); what it
scores anyway is a warning (columns in another order, rows in another order, labels outside the classes, which
score as wrong, and probability rows that do not sum to 1 or leave [0, 1], which the multi-class log loss clips
and rescales). A file predicting one class for every row is called out too, and comparisons with earlier
submissions for the same test images (`kagglekit.submission.compare`) catch the silent failures no format check
can.

Files are read as text with the standard `csv` module (`kagglekit.submission.table`), not pandas, so that
`kagglekit check` answers at once.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kagglekit.competition import Competition
from kagglekit.errors import SubmissionError
from kagglekit.submission.compare import Comparison, compare_with_priors, top_predictions
from kagglekit.submission.table import MAX_LISTED, Table, listed, read_table

if TYPE_CHECKING:
    import pandas as pd

SUM_WARNING = 0.01  # a row sum further than this from 1 is worth a warning (4-decimal rounding of 120 columns is not)
PROBABILITY_CLIP = 1e-15  # Kaggle's multi-class log loss: max(min(p, 1 - 1e-15), 1e-15), then each row / its sum
EMPTY_CELLS = ("", "nan", "NaN", "NA", "None", "null")


@dataclass
class CheckReport:
    path: Path
    errors: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    comparisons: list[Comparison] = field(default_factory=list)
    not_compared: list[tuple[Path, str]] = field(default_factory=list)  # earlier files left out, and why

    @property
    def ok(self) -> bool:
        return not self.errors

    def to_dict(self) -> dict:
        return {
            "path": str(self.path),
            "ok": self.ok,
            "errors": self.errors,
            "warnings": self.warnings,
            "comparisons": [
                {"prior": str(c.prior), "common": c.common, "agreement": c.agreement, "shift": c.shift}
                for c in self.comparisons
            ],
            "not_compared": [{"prior": str(p), "reason": reason} for p, reason in self.not_compared],
        }


def _where(flags: Sequence[bool]) -> list[int]:
    return [i for i, flag in enumerate(flags) if flag]


def _read_sample(path: Path) -> Table:
    if not path.is_file():
        raise SubmissionError(f"sample submission {path}: {'a folder' if path.is_dir() else 'no such file'}; "
                              "give the competition's sample_submission CSV.")  # fmt: skip
    try:
        return read_table(path)
    except SubmissionError as error:
        raise SubmissionError(f"sample submission {path}: {error}.") from None


def _check_sample(sample: Table, competition: Competition, where: str) -> None:
    """A `SubmissionError` when `sample` cannot be the competition's sample submission (another competition's, a
    training CSV, a file cut short), so that its faults are not blamed on the submission."""
    id_column, spec = competition.id_column, competition.submission
    wanted = [id_column] if spec.kind == "probs" else [id_column, spec.column]
    problem = None
    if id_column not in sample.columns or (spec.kind != "probs" and sorted(sample.columns) != sorted(wanted)):
        problem = f"its header is {', '.join(map(repr, sample.columns))}, {competition.name}'s has " + (
            f"{id_column!r} then one column per class" if spec.kind == "probs" else ", ".join(map(repr, wanted))
        )
    elif ragged := sample.ragged():
        problem = f"wrong number of cells at {sample.lines_of(ragged)}"
    elif len(sample) == 0:
        problem = "it has a header but no rows"
    if problem:
        raise SubmissionError(f"{where}: {problem}; give {competition.name}'s sample_submission CSV.")


def _check_columns(table: Table, expected: list[str], report: CheckReport) -> None:
    columns = table.columns
    repeated = sorted({c for c in columns if columns.count(c) > 1})
    missing = [c for c in expected if c not in columns]
    extra = [c for c in columns if c not in expected]
    if repeated:
        report.errors.append(
            f"column(s) named twice in the header (line 1): {', '.join(map(repr, repeated[:MAX_LISTED]))}"
        )
    if missing:
        report.errors.append(f"missing column(s): {listed(missing, repr)} in the header (line 1)")
    if extra:
        report.errors.append(
            f"unexpected column(s): {', '.join(map(repr, extra[:MAX_LISTED]))} in the header (line 1); it must be "
            "exactly the sample submission's"
        )
    if not (repeated or missing or extra) and columns != expected:
        first = next(i for i, (a, b) in enumerate(zip(columns, expected, strict=True)) if a != b)
        report.warnings.append(
            f"columns out of order: column {first + 1} is {columns[first]!r}, the sample submission has "
            f"{expected[first]!r} there (header, line 1); Kaggle matches columns by name"
        )


def _check_ids(table: Table, id_column: str, sample: Table | None, report: CheckReport) -> None:
    ids, seen, duplicated = table.column(id_column), set(), []
    for i, id_ in enumerate(ids):
        if id_ in seen:
            duplicated.append(i)
        seen.add(id_)
    if duplicated:
        report.errors.append(f"duplicate id(s) at {table.lines_of(duplicated, id_column)}")
    if sample is None:
        report.warnings.append(
            "no sample submission given or found: row count and id set were not checked (pass --sample-submission)"
        )
        return
    expected = sample.column(id_column)
    if len(ids) != len(expected):
        report.errors.append(f"{len(ids)} rows, the sample submission has {len(expected)}")
    known = set(expected)
    unknown = _where(id_ not in known for id_ in ids)
    if unknown:
        report.errors.append(f"id(s) not in the sample submission at {table.lines_of(unknown, id_column)}")
    absent = _where(id_ not in seen for id_ in expected)
    if absent:  # not in the file, so the lines named are the sample submission's
        examples = ", ".join(f"{expected[r]} (sample submission line {sample.lines[r]})" for r in absent[:3])
        report.errors.append(f"{len(absent)} id(s) of the sample submission are missing, e.g. {examples}")
    if not (unknown or absent or duplicated) and ids != expected:
        first = next(i for i, (a, b) in enumerate(zip(ids, expected, strict=True)) if a != b)
        report.warnings.append(
            f"rows are in a different order than the sample submission (first at line {table.lines[first]}: "
            f"{ids[first]} where the sample has {expected[first]}); Kaggle matches by id, but check that "
            "predictions were not shuffled against their ids"
        )


def _number(cell: str) -> float | None:
    try:
        value = float(cell)
    except ValueError:
        return None
    return None if math.isnan(value) else value


def _check_probabilities(table: Table, id_column: str, report: CheckReport) -> None:
    """Non-numeric cells are errors; values outside [0, 1] and rows not summing to 1 are warnings, because Kaggle's
    multi-class log loss clips every value to [1e-15, 1 - 1e-15] and divides each row by its sum before scoring."""
    keep = [i for i, c in enumerate(table.columns) if c != id_column]
    cells = [[row[i] for i in keep] for row in table.rows]
    values = [[_number(cell) for cell in row] for row in cells]
    not_numeric = _where(
        any(v is None and c.strip() not in EMPTY_CELLS for v, c in zip(vs, cs, strict=True))
        for vs, cs in zip(values, cells, strict=True)
    )
    if not_numeric:
        report.errors.append(f"non-numeric probability at {table.lines_of(not_numeric, id_column)}")
    out_of_range = _where(any(v is not None and not 0 <= v <= 1 for v in row) for row in values)
    if out_of_range:
        report.warnings.append(
            f"probability outside [0, 1] at {table.lines_of(out_of_range, id_column)}: Kaggle clips it to "
            f"[{PROBABILITY_CLIP:g}, 1 - {PROBABILITY_CLIP:g}]; were logits written instead of probabilities?"
        )
    sums = [
        None if None in row else sum(min(max(v, PROBABILITY_CLIP), 1 - PROBABILITY_CLIP) for v in row) for row in values
    ]
    off = _where(total is not None and abs(total - 1) > SUM_WARNING for total in sums)
    if off:
        report.warnings.append(
            f"row probabilities do not sum to 1 (±{SUM_WARNING:g}) at {table.lines_of(off, id_column)}, e.g. line "
            f"{table.lines[off[0]]} sums to {sums[off[0]]:.4f}; Kaggle divides each row by its sum, so this only "
            "matters if columns are missing or shifted"
        )


def _check_cells(table: Table, competition: Competition, classes: Sequence[str] | None, report: CheckReport) -> None:
    id_column, spec = competition.id_column, competition.submission
    for column in dict.fromkeys(table.columns):
        empty = _where(cell.strip() in EMPTY_CELLS for cell in table.column(column))
        if empty:
            report.errors.append(f"empty or NaN {column!r} at {table.lines_of(empty, id_column)}")
    if spec.kind == "probs":
        _check_probabilities(table, id_column, report)
        return
    if spec.column not in table.columns:
        return
    cells = table.column(spec.column)
    padded = _where(cell != cell.strip() for cell in cells)
    if padded:
        report.warnings.append(f"spaces around {spec.column!r} at {table.lines_of(padded, id_column)}; Kaggle may "
                               "not match a padded label to its class")  # fmt: skip
    if classes is None:
        report.warnings.append("no class list known: labels were not checked against the vocabulary")
        return
    allowed = set(classes)
    labels = [cell.split() if spec.kind == "tags" else [cell.strip()] for cell in cells]
    outside = [[label for label in row if label and label not in allowed] for row in labels]
    unknown = _where(outside)
    if unknown:
        values = sorted({label for row in outside for label in row})
        report.warnings.append(
            f"label(s) outside the {len(allowed)} known classes ({', '.join(values[:MAX_LISTED])}) at "
            f"{table.lines_of(unknown, id_column)}; Kaggle scores them as wrong"
        )


def _check_constant(top: dict[str, str], competition: Competition, report: CheckReport) -> None:
    """A warning when every row predicts the same (`top`: each id's top prediction): what a model that learnt
    nothing, or the sample submission uploaded as it is, looks like (a single row is not suspicious)."""
    predicted = set(top.values())
    if len(top) > 1 and len(predicted) == 1:
        what = "tag set" if competition.submission.kind == "tags" else "class"
        report.warnings.append(
            f"every one of the {len(top)} rows predicts the same {what} ({predicted.pop()}): a model that learnt "
            "nothing, or an unfilled sample submission, looks like this"
        )


def check_submission(
    path: Path,
    competition: Competition,
    sample_submission: Path | pd.DataFrame | None = None,
    against: Sequence[Path] = (),
    classes: Sequence[str] | None = None,
    compare: int | None = None,
) -> CheckReport:
    """Validate a submission file against the sample submission and compare it with earlier ones.

    `classes` is the label vocabulary; by default the competition's declared classes of its target task. `against`
    are earlier submissions: those made for the same test images are compared (the first `compare` of them, when
    given), the others listed in `not_compared`. A sample submission or earlier file that is not a readable file is
    a `SubmissionError` (the check would be meaningless without it).
    """
    path = Path(path)
    if isinstance(sample_submission, (str, Path)):
        sample = _read_sample(Path(sample_submission))
        _check_sample(sample, competition, f"sample submission {sample_submission}")
    elif sample_submission is not None:
        sample = Table.from_frame(sample_submission)
        _check_sample(sample, competition, "the sample submission")
    else:
        sample = None
    for prior in map(Path, against):
        if not prior.is_file():
            raise SubmissionError(f"earlier submission {prior}: {'a folder' if prior.is_dir() else 'no such file'}; "
                                  "give submission CSVs to compare with.")  # fmt: skip
    report = CheckReport(path)
    try:
        table = read_table(path)
    except SubmissionError as error:
        report.errors.append(str(error))
        return report
    spec, id_column = competition.submission, competition.id_column
    if sample is not None:
        expected_columns = sample.columns
    elif spec.kind == "probs":
        expected_columns = [id_column, *[c for c in table.columns if c != id_column]]
    else:
        expected_columns = [id_column, spec.column]
    _check_columns(table, expected_columns, report)
    ragged = table.ragged()
    if ragged:
        report.errors.append(f"wrong number of cells (the header has {len(table.columns)}) at "
                             f"{table.lines_of(ragged, None)}")  # fmt: skip
    if len(table) == 0:
        report.errors.append("the file has a header but no rows")
    if ragged or len(table) == 0 or id_column not in table.columns:
        return report
    if classes is None:
        declared = competition.tasks[competition.target_task].classes
        classes = list(declared) if declared else None
    _check_ids(table, id_column, sample, report)
    _check_cells(table, competition, classes, report)
    if report.errors:
        return report
    top = top_predictions(table, competition)  # once, for the constant-prediction check and every comparison
    _check_constant(top, competition, report)
    compare_with_priors(top, competition, against, compare, report)
    return report
