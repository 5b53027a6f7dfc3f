"""Sanity checks of a submission file before it costs one of the day's Kaggle submissions.

Every problem names the CSV line it is on (line 1 is the header) and what to do. Errors are what Kaggle's grader
rejects (a missing or unexpected column, missing, unknown or repeated ids, empty or non-numeric cells); what it
scores anyway is a warning (columns in another order, rows in another order, labels outside the classes, which
score as wrong, and probability rows that do not sum to 1 or leave [0, 1], which the multi-class log loss clips
and rescales). Comparisons with earlier submissions for the same test images catch the silent failures no format
check can: a shuffled id column or a broken model still produce a well-formed file, but they disagree with every
earlier submission; a file predicting one class for every row is called out too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kagglekit.competition import Competition
from kagglekit.errors import SubmissionError
from kagglekit.submission.build import decisions, submission_source

AGREEMENT_WARNING = 0.90
SUM_WARNING = 0.01  # a row sum further than this from 1 is worth a warning (4-decimal rounding of 120 columns is not)
PROBABILITY_CLIP = 1e-15  # Kaggle's multi-class log loss: max(min(p, 1 - 1e-15), 1e-15), then each row / its sum
MAX_LISTED = 5
EMPTY_CELLS = ("", "nan", "NaN", "NA", "None", "null")


@dataclass
class Comparison:
    prior: Path
    common: int  # ids present in both files
    agreement: float | None  # share of common ids with the same top prediction (None: no common ids)
    shift: float | None  # total variation distance between the predicted-class distributions
    largest_changes: list[tuple[str, float, float]] = field(default_factory=list)  # class, prior, new share


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


def _lines(mask: pd.Series, frame: pd.DataFrame, id_column: str | None) -> str:
    """'line 3 (id x), line 9 (id y) and 4 more' for the rows where mask is true."""
    rows = np.flatnonzero(mask.to_numpy())
    parts = [
        f"line {r + 2}" + (f" (id {frame[id_column].iloc[r]})" if id_column in frame.columns else "")
        for r in rows[:MAX_LISTED]
    ]
    more = f" and {len(rows) - MAX_LISTED} more" if len(rows) > MAX_LISTED else ""
    return ", ".join(parts) + more


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _read_sample(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise SubmissionError(f"sample submission {path}: {'a folder' if path.is_dir() else 'no such file'}; "
                              "give the competition's sample_submission CSV.")  # fmt: skip
    try:
        return _read(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise SubmissionError(f"sample submission {path}: cannot be read as CSV ({error}).") from None


def _check_columns(frame: pd.DataFrame, expected: list[str], report: CheckReport) -> None:
    missing = [c for c in expected if c not in frame.columns]
    extra = [c for c in frame.columns if c not in expected]
    if missing:
        report.errors.append(
            f"missing column(s): {', '.join(missing[:MAX_LISTED])}"
            + (f" and {len(missing) - MAX_LISTED} more" if len(missing) > MAX_LISTED else "")
            + " in the header (line 1)"
        )
    if extra:
        report.errors.append(
            f"unexpected column(s): {', '.join(extra[:MAX_LISTED])} in the header (line 1); it must be exactly the "
            "sample submission's"
        )
    if not missing and not extra and list(frame.columns) != expected:
        first = next(i for i, (a, b) in enumerate(zip(frame.columns, expected, strict=True)) if a != b)
        report.warnings.append(
            f"columns out of order: column {first + 1} is {frame.columns[first]!r}, the sample submission has "
            f"{expected[first]!r} there (header, line 1); Kaggle matches columns by name"
        )


def _check_ids(frame: pd.DataFrame, id_column: str, sample: pd.DataFrame | None, report: CheckReport) -> None:
    ids = frame[id_column]
    duplicated = ids.duplicated(keep="first")
    if duplicated.any():
        report.errors.append(f"duplicate id(s) at {_lines(duplicated, frame, id_column)}")
    if sample is None:
        report.warnings.append("no sample submission given: row count and id set were not checked")
        return
    expected = sample[id_column]
    if len(frame) != len(expected):
        report.errors.append(f"{len(frame)} rows, the sample submission has {len(expected)}")
    unknown = ~ids.isin(set(expected))
    if unknown.any():
        report.errors.append(f"id(s) not in the sample submission at {_lines(unknown, frame, id_column)}")
    absent = np.flatnonzero(~expected.isin(set(ids)).to_numpy())
    missing = expected.iloc[absent]
    if len(missing):  # not in the file, so the lines named are the sample submission's
        examples = ", ".join(f"{expected.iloc[r]} (sample submission line {r + 2})" for r in absent[:3])
        report.errors.append(f"{len(missing)} id(s) of the sample submission are missing, e.g. {examples}")
    if not (unknown.any() or len(missing) or duplicated.any()) and ids.tolist() != expected.tolist():
        first = next(i for i, (a, b) in enumerate(zip(ids, expected, strict=True)) if a != b)
        report.warnings.append(
            f"rows are in a different order than the sample submission (first at line {first + 2}: "
            f"{ids.iloc[first]} where the sample has {expected.iloc[first]}); Kaggle matches by id, but check "
            "that predictions were not shuffled against their ids"
        )


def _check_probabilities(frame: pd.DataFrame, id_column: str, report: CheckReport) -> None:
    """Non-numeric cells are errors; values outside [0, 1] and rows not summing to 1 are warnings, because Kaggle's
    multi-class log loss clips every value to [1e-15, 1 - 1e-15] and divides each row by its sum before scoring."""
    raw = frame[[c for c in frame.columns if c != id_column]]
    values = raw.apply(pd.to_numeric, errors="coerce")
    not_numeric = values.isna() & ~raw.apply(lambda column: column.str.strip().isin(EMPTY_CELLS))
    if not_numeric.to_numpy().any():
        report.errors.append(f"non-numeric probability at {_lines(not_numeric.any(axis=1), frame, id_column)}")
    out_of_range = (values < 0) | (values > 1)
    if out_of_range.to_numpy().any():
        report.warnings.append(
            f"probability outside [0, 1] at {_lines(out_of_range.any(axis=1), frame, id_column)}: Kaggle clips it to "
            f"[{PROBABILITY_CLIP:g}, 1 - {PROBABILITY_CLIP:g}]; were logits written instead of probabilities?"
        )
    sums = values.clip(PROBABILITY_CLIP, 1 - PROBABILITY_CLIP).sum(axis=1, min_count=1)
    off = values.notna().all(axis=1) & ((sums - 1).abs() > SUM_WARNING)
    if off.any():
        first = np.flatnonzero(off.to_numpy())[0]
        report.warnings.append(
            f"row probabilities do not sum to 1 (±{SUM_WARNING:g}) at {_lines(off, frame, id_column)}, e.g. line "
            f"{first + 2} sums to {sums.iloc[first]:.4f}; Kaggle divides each row by its sum, so this only matters if "
            "columns are missing or shifted"
        )


def _check_cells(
    frame: pd.DataFrame, competition: Competition, classes: Sequence[str] | None, report: CheckReport
) -> None:
    id_column, spec = competition.id_column, competition.submission
    for column in frame.columns:
        empty = frame[column].str.strip().isin(EMPTY_CELLS)
        if empty.any():
            report.errors.append(f"empty or NaN {column!r} at {_lines(empty, frame, id_column)}")
    if spec.kind == "probs":
        _check_probabilities(frame, id_column, report)
        return
    if spec.column not in frame.columns:
        return
    padded = frame[spec.column] != frame[spec.column].str.strip()
    if padded.any():
        report.warnings.append(f"spaces around {spec.column!r} at {_lines(padded, frame, id_column)}; Kaggle may "
                               "not match a padded label to its class")  # fmt: skip
    if classes is None:
        report.warnings.append("no class list known: labels were not checked against the vocabulary")
        return
    allowed = set(classes)
    cells = frame[spec.column].str.strip()
    if spec.kind == "label":
        unknown = ~cells.isin(allowed) & (cells != "")
    else:
        unknown = cells.map(lambda cell: any(tag not in allowed for tag in cell.split()))
    if unknown.any():
        values = sorted(
            {v for cell in cells[unknown] for v in (cell.split() if spec.kind == "tags" else [cell])} - allowed
        )
        report.warnings.append(
            f"label(s) outside the {len(allowed)} known classes ({', '.join(values[:MAX_LISTED])}) at "
            f"{_lines(unknown, frame, id_column)}; Kaggle scores them as wrong"
        )


def _check_constant(frame: pd.DataFrame, competition: Competition, report: CheckReport) -> None:
    """A warning when every row predicts the same: what a model that learnt nothing, or the sample submission
    uploaded as it is, looks like (a single row is not suspicious)."""
    top = _top(decisions(frame, competition))
    if len(top) > 1 and top.nunique() == 1:
        what = "tag set" if competition.submission.kind == "tags" else "class"
        report.warnings.append(
            f"every one of the {len(top)} rows predicts the same {what} ({top.iloc[0]}): a model that learnt nothing, "
            "or an unfilled sample submission, looks like this"
        )


def _top(predictions: pd.Series | pd.DataFrame) -> pd.Series:
    """The single most telling prediction per id: the label, the top class, or the sorted tag string."""
    if isinstance(predictions, pd.DataFrame):
        return predictions.idxmax(axis=1)
    return predictions.map(lambda v: " ".join(sorted(v)) if isinstance(v, frozenset) else v)


def _distribution(predictions: pd.Series | pd.DataFrame) -> pd.Series:
    """Share of ids predicted as each class (each tag, for multi-label)."""
    if isinstance(predictions, pd.DataFrame):
        return predictions.idxmax(axis=1).value_counts(normalize=True)
    sample = predictions.iloc[0] if len(predictions) else None
    if isinstance(sample, frozenset):
        return predictions.explode().value_counts() / len(predictions)
    return predictions.value_counts(normalize=True)


def compare_submissions(
    new: pd.DataFrame, prior: pd.DataFrame, competition: Competition, prior_path: Path
) -> Comparison:
    """Agreement of top predictions on shared ids, and how far the predicted-class distribution moved."""
    a, b = decisions(new, competition), decisions(prior, competition)
    common = a.index.intersection(b.index)
    if len(common) == 0:
        return Comparison(prior_path, 0, None, None)
    top_a, top_b = _top(a.loc[common]), _top(b.loc[common])
    agreement = float((top_a == top_b).mean())
    dist_a, dist_b = _distribution(a.loc[common]), _distribution(b.loc[common])
    classes = dist_a.index.union(dist_b.index)
    dist_a, dist_b = dist_a.reindex(classes, fill_value=0.0), dist_b.reindex(classes, fill_value=0.0)
    delta = (dist_a - dist_b).abs()
    changes = [(str(c), float(dist_b[c]), float(dist_a[c])) for c in delta.sort_values(ascending=False).index[:3]]
    shift = float(0.5 * delta.sum())
    return Comparison(prior_path, len(common), agreement, shift, changes)


def _other_test_images(path: Path, prior: Path) -> str | None:
    """Why the sidecars say `prior` predicts other test images than `path` (None: same images, or not recorded)."""
    mine = submission_source(path).get("test_data") or {}
    theirs = submission_source(prior).get("test_data") or {}
    if not (mine.get("fingerprint") and theirs.get("fingerprint")) or mine["fingerprint"] == theirs["fingerprint"]:
        return None
    if theirs.get("data") != mine.get("data"):
        return f"made for the test images in {theirs.get('data')}, this file for those in {mine.get('data')}"
    return f"made for other test images in {mine.get('data')} (the folder changed since)"


def _compare_with_priors(
    frame: pd.DataFrame, competition: Competition, against: Sequence[Path], limit: int | None, report: CheckReport
) -> None:
    """Compare with each earlier file made for the same test images (the sidecars' fingerprints, else the same id
    set), at most `limit` of them in the order given; the others are listed in `report.not_compared`."""
    ids = set(frame[competition.id_column])
    for prior in map(Path, against):
        if limit is not None and len(report.comparisons) >= limit:
            break
        reason = _other_test_images(report.path, prior)
        if reason is None:
            try:
                earlier = _read(prior)
            except (OSError, ValueError, pd.errors.ParserError) as error:
                report.warnings.append(f"could not compare with {prior}: {error}")
                continue
            if competition.id_column not in earlier.columns or set(earlier[competition.id_column]) != ids:
                reason = "made for other test ids"
        if reason is not None:
            report.not_compared.append((prior, reason))
            continue
        try:
            comparison = compare_submissions(frame, earlier, competition, prior)
        except (KeyError, ValueError) as error:
            report.warnings.append(f"could not compare with {prior}: {error}")
            continue
        report.comparisons.append(comparison)
        if comparison.agreement is not None and comparison.agreement < AGREEMENT_WARNING:
            report.warnings.append(
                f"only {comparison.agreement:.1%} of predictions agree with {prior.name} "
                f"(below {AGREEMENT_WARNING:.0%}): check ids are not shuffled and the model is the one you meant"
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
        sample_submission = _read_sample(Path(sample_submission))
    for prior in map(Path, against):
        if not prior.is_file():
            raise SubmissionError(f"earlier submission {prior}: {'a folder' if prior.is_dir() else 'no such file'}; "
                                  "give submission CSVs to compare with.")  # fmt: skip
    report = CheckReport(path)
    try:
        frame = _read(path)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        report.errors.append(f"cannot be read as CSV: {error}")
        return report
    sample = sample_submission
    spec, id_column = competition.submission, competition.id_column
    if sample is not None:
        expected_columns = list(sample.columns)
    elif spec.kind == "probs":
        expected_columns = [id_column, *[c for c in frame.columns if c != id_column]]
    else:
        expected_columns = [id_column, spec.column]
    _check_columns(frame, expected_columns, report)
    if id_column not in frame.columns:
        return report
    if classes is None:
        declared = competition.tasks[competition.target_task].classes
        classes = list(declared) if declared else None
    _check_ids(frame, id_column, sample, report)
    _check_cells(frame, competition, classes, report)
    if len(frame) == 0:
        report.errors.append("the file has a header but no rows")
    if report.errors:
        return report
    _check_constant(frame, competition, report)
    _compare_with_priors(frame, competition, against, compare, report)
    return report
