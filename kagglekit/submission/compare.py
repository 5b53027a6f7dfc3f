"""Comparing a submission with earlier ones for the same test images: the silent failures no format check can catch.

A shuffled id column or a broken model still produce a well-formed file, but its top predictions disagree with
every earlier submission, or its predicted-class distribution moves (total variation distance). Files made for
other test images (the `.source.json` sidecars' fingerprints, else another id set) are not compared, and why is
said.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from kagglekit.competition import Competition
from kagglekit.errors import SubmissionError
from kagglekit.submission.sidecar import submission_source
from kagglekit.submission.table import Table, read_table

if TYPE_CHECKING:
    from kagglekit.submission.checks import CheckReport

AGREEMENT_WARNING = 0.90


@dataclass
class Comparison:
    """How a submission compares with an earlier one for the same test images (`compare_submissions`)."""

    prior: Path
    common: int  # ids present in both files
    agreement: float | None  # share of common ids with the same top prediction (None: no common ids)
    shift: float | None  # total variation distance between the predicted-class distributions
    largest_changes: list[tuple[str, float, float]] = field(default_factory=list)  # class, prior, new share


def top_predictions(table: Table, competition: Competition) -> dict[str, str]:
    """The single most telling prediction per id: the label, the most probable class (the first on a tie), or the
    sorted tag string."""
    id_column, spec = competition.id_column, competition.submission
    ids = table.column(id_column)
    if spec.kind == "label":
        return dict(zip(ids, table.column(spec.column), strict=True))
    if spec.kind == "tags":
        cells = table.column(spec.column)
        return {id_: " ".join(sorted(set(cell.split()))) for id_, cell in zip(ids, cells, strict=True)}
    keep = [i for i, c in enumerate(table.columns) if c != id_column]
    top = {}
    for id_, row in zip(ids, table.rows, strict=True):
        values = [float(row[i]) for i in keep]
        top[id_] = table.columns[keep[values.index(max(values))]]
    return top


def _distribution(top: Sequence[str], tags: bool) -> dict[str, float]:
    """Share of ids predicted as each class (each tag, for multi-label)."""
    counts = Counter(tag for cell in top for tag in cell.split()) if tags else Counter(top)
    return {label: count / len(top) for label, count in counts.items()}


def _comparison(a: dict[str, str], b: dict[str, str], competition: Competition, prior_path: Path) -> Comparison:
    """The comparison of top predictions `a` (the new file's, by id) with `b` (the earlier file's)."""
    common = [id_ for id_ in a if id_ in b]
    if not common:
        return Comparison(prior_path, 0, None, None)
    agreement = sum(a[id_] == b[id_] for id_ in common) / len(common)
    tags = competition.submission.kind == "tags"
    dist_a = _distribution([a[id_] for id_ in common], tags)
    dist_b = _distribution([b[id_] for id_ in common], tags)
    delta = {c: abs(dist_a.get(c, 0.0) - dist_b.get(c, 0.0)) for c in sorted(dist_a.keys() | dist_b.keys())}
    largest = sorted((c for c in delta if delta[c] > 0), key=delta.get, reverse=True)[:3]
    changes = [(c, dist_b.get(c, 0.0), dist_a.get(c, 0.0)) for c in largest]
    return Comparison(prior_path, len(common), agreement, 0.5 * sum(delta.values()), changes)


def compare_submissions(new: Path, prior: Path, competition: Competition) -> Comparison:
    """Agreement of top predictions on the ids both files have, and how far the predicted-class distribution moved
    (total variation distance: half the sum of absolute differences of the class shares).

    Raises `SubmissionError` if either file cannot be read as CSV.
    """
    a, b = (top_predictions(read_table(Path(path)), competition) for path in (new, prior))
    return _comparison(a, b, competition, Path(prior))


def _other_test_images(path: Path, prior: Path) -> str | None:
    """Why the sidecars say `prior` predicts other test images than `path` (None: same images, or not recorded)."""
    mine = submission_source(path).get("test_data") or {}
    theirs = submission_source(prior).get("test_data") or {}
    if not (mine.get("fingerprint") and theirs.get("fingerprint")) or mine["fingerprint"] == theirs["fingerprint"]:
        return None
    if theirs.get("data") != mine.get("data"):
        return f"made for the test images in {theirs.get('data')}, this file for those in {mine.get('data')}"
    return f"made for other test images in {mine.get('data')} (the folder changed since)"


def _earlier(prior: Path, competition: Competition, ids: set[str], report: CheckReport) -> Table | str | None:
    """An earlier file's table, or why it is not compared (a string), or None if it cannot be read (a warning)."""
    reason = _other_test_images(report.path, prior)
    if reason is not None:
        return reason
    try:
        earlier = read_table(prior)
    except SubmissionError as error:
        report.warnings.append(f"could not compare with {prior}: {error}")
        return None
    spec = competition.submission
    needed = [competition.id_column, *([spec.column] if spec.kind != "probs" else [])]
    lacking = [c for c in needed if c not in earlier.columns]
    if lacking:
        return f"its header has no {', '.join(map(repr, lacking))} column"
    ragged = earlier.ragged()
    if ragged:
        return f"wrong number of cells at {earlier.lines_of(ragged)}"
    return "made for other test ids" if set(earlier.column(needed[0])) != ids else earlier


def compare_with_priors(
    top: dict[str, str], competition: Competition, against: Sequence[Path], limit: int | None, report: CheckReport
) -> None:
    """Compare the file's top predictions `top` (by id, `top_predictions`) with each earlier file made for the same
    test images (the sidecars' fingerprints, else the same id set), at most `limit` of them in the order given; the
    others are listed in `report.not_compared`."""
    ids = set(top)
    for prior in map(Path, against):
        if limit is not None and len(report.comparisons) >= limit:
            break
        earlier = _earlier(prior, competition, ids, report)
        if isinstance(earlier, str):
            report.not_compared.append((prior, earlier))
            continue
        if earlier is None:
            continue
        try:
            comparison = _comparison(top, top_predictions(earlier, competition), competition, prior)
        except (KeyError, ValueError) as error:  # e.g. a probability column the new file lacks, a non-number
            report.warnings.append(f"could not compare with {prior}: {error}")
            continue
        report.comparisons.append(comparison)
        if comparison.agreement is not None and comparison.agreement < AGREEMENT_WARNING:
            report.warnings.append(
                f"only {comparison.agreement:.1%} of predictions agree with {prior.name} "
                f"(below {AGREEMENT_WARNING:.0%}): check ids are not shuffled and the model is the one you meant"
            )
