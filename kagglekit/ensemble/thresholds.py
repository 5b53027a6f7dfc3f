"""Decision thresholds for multi-label submissions, tuned on validation probabilities.

Why tune at all: sigmoid outputs are trained for log loss, not for the competition's metric. F2 weighs recall four
times as much as precision, so its best cut is well below 0.5, and it differs between tags whose probabilities
are calibrated differently. Why be careful: a threshold tuned on a handful of positive examples
fits their noise, so rare tags get less freedom than common ones (see `tune_thresholds`).

Everything here is numpy on per-image true/false positive counts, so a 2,000 x 17 matrix tunes in milliseconds.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import partial
from typing import Literal

import numpy as np

# A per-image metric from true-positive, false-positive and false-negative counts (arrays of any one shape).
CountMetric = Callable[[np.ndarray, np.ndarray, np.ndarray], np.ndarray]

DEFAULT_GRID = np.round(np.arange(0.05, 0.95, 0.01), 2)
_TIE = 1e-12


def fbeta_per_image(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray, beta: float = 2.0) -> np.ndarray:
    """F-beta of each image from its counts; 0 where undefined, like sklearn's `zero_division=0`."""
    b2 = beta * beta
    numerator = (1 + b2) * np.asarray(tp, dtype=np.float64)
    denominator = numerator + b2 * np.asarray(fn, dtype=np.float64) + np.asarray(fp, dtype=np.float64)
    return np.divide(numerator, denominator, out=np.zeros_like(denominator), where=denominator > 0)


def f2_per_image(tp: np.ndarray, fp: np.ndarray, fn: np.ndarray) -> np.ndarray:
    """F2 per image; its mean over images is `kagglekit.metrics.f2_samples`."""
    return fbeta_per_image(tp, fp, fn, beta=2.0)


# Tunable competition metrics (names in kagglekit.metrics.METRICS) and their per-image count form.
COUNT_METRICS: dict[str, CountMetric] = {
    "f2_samples": f2_per_image,
    "f1_samples": partial(fbeta_per_image, beta=1.0),
}


@dataclass
class Thresholds:
    """The outcome of tuning: both candidates with their validation scores, and which one to use."""

    global_threshold: float
    per_tag: np.ndarray  # one threshold per tag (the global one where a tag had too few positives)
    global_score: float  # validation metric with the global threshold for every tag
    per_tag_score: float  # validation metric with `per_tag`; never below `global_score`
    chosen: Literal["global", "per_tag"]  # per_tag only when it beats global on validation
    gain_se: float = 0.0  # standard error of the per-tag gain (paired over images): is the gain more than noise?
    classes: list[str] | None = None  # the tag of each column, for readable saved files
    positives: np.ndarray | None = None  # positive validation examples per tag

    @property
    def thresholds(self) -> np.ndarray:
        """The thresholds to submit with: one per tag."""
        if self.chosen == "per_tag":
            return np.asarray(self.per_tag, dtype=np.float64)
        return np.full(len(self.per_tag), self.global_threshold, dtype=np.float64)

    @property
    def score(self) -> float:
        return self.per_tag_score if self.chosen == "per_tag" else self.global_score

    def to_dict(self) -> dict:
        """JSON-ready; `thresholds` is included for readers and recomputed by `from_dict`."""
        return {
            "chosen": self.chosen,
            "global_threshold": float(self.global_threshold),
            "global_score": float(self.global_score),
            "per_tag_score": float(self.per_tag_score),
            "gain_se": float(self.gain_se),
            "classes": None if self.classes is None else list(self.classes),
            "per_tag": [float(t) for t in self.per_tag],
            "positives": None if self.positives is None else [int(n) for n in self.positives],
            "thresholds": [float(t) for t in self.thresholds],
        }

    @classmethod
    def from_dict(cls, data: dict) -> Thresholds:
        if data["chosen"] not in ("global", "per_tag"):
            raise ValueError(f"chosen must be 'global' or 'per_tag', got {data['chosen']!r}.")
        positives = data.get("positives")
        return cls(
            global_threshold=float(data["global_threshold"]),
            per_tag=np.asarray(data["per_tag"], dtype=np.float64),
            global_score=float(data["global_score"]),
            per_tag_score=float(data["per_tag_score"]),
            chosen=data["chosen"],
            gain_se=float(data.get("gain_se", 0.0)),
            classes=None if data.get("classes") is None else list(data["classes"]),
            positives=None if positives is None else np.asarray(positives, dtype=np.int64),
        )


def label_matrix(labels: Sequence[str], classes: Sequence[str], delim: str = " ") -> np.ndarray:
    """0/1 matrix (rows: `labels`, columns: `classes`) of delimited label strings such as 'clear primary'."""
    column = {c: j for j, c in enumerate(classes)}
    matrix = np.zeros((len(labels), len(classes)), dtype=np.int8)
    for i, cell in enumerate(labels):
        for tag in str(cell).split(delim):
            if tag == "":
                continue
            if tag not in column:
                raise ValueError(f"Label {tag!r} (row {i}) is not one of the {len(classes)} classes.")
            matrix[i, column[tag]] = 1
    return matrix


def _nearest_best(scores: np.ndarray, candidates: np.ndarray, current: float) -> int:
    """Index of the best score; among ties, the candidate nearest `current` (so ties never move it)."""
    ties = np.flatnonzero(scores >= scores.max() - _TIE)
    return int(ties[np.argmin(np.abs(candidates[ties] - current))])


def _global(
    p: np.ndarray, y: np.ndarray, forced: np.ndarray, grid: np.ndarray, metric: CountMetric
) -> tuple[float, np.ndarray]:
    """The best single threshold for all tags (the middle of a tied run) and its per-image scores: every grid
    value at once, as a (grid, images, tags) array."""
    every = (p[None] >= grid[:, None, None]) | forced[None]
    tp = (every & y[None]).sum(axis=2)
    fp = every.sum(axis=2) - tp
    per_image = metric(tp, fp, y.sum(axis=1)[None] - tp)
    scores = per_image.mean(axis=1)
    ties = np.flatnonzero(scores >= scores.max() - _TIE)
    best = ties[len(ties) // 2]
    return float(grid[best]), per_image[best]


def _per_tag(
    p: np.ndarray, y: np.ndarray, forced: np.ndarray, grid: np.ndarray, metric: CountMetric, weight: np.ndarray,
    start: float, max_passes: int,
) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
    """Coordinate ascent from `start`, tags with the most positives first, each on the grid shrunk towards `start`
    by its credibility `weight` (0: the tag keeps `start`); returns the thresholds and their per-image scores.

    A step moves a tag only when the mean score of the whole matrix strictly improves, re-scored from per-image
    true/false positive counts with only that tag's column changed."""
    truth_per_image = y.sum(axis=1)
    per_tag = np.full(p.shape[1], start)
    predicted = (p >= per_tag) | forced
    tp_image = (predicted & y).sum(axis=1)
    fp_image = predicted.sum(axis=1) - tp_image
    score = float(metric(tp_image, fp_image, truth_per_image - tp_image).mean())
    for _ in range(max_passes):
        moved = False
        for j in np.argsort(-y.sum(axis=0), kind="stable"):
            if weight[j] == 0:
                continue
            candidates = start + weight[j] * (grid - start)
            column = (p[None, :, j] >= candidates[:, None]) | forced[None, :, j]  # (candidates, images)
            tp_new = (tp_image - (predicted[:, j] & y[:, j]))[None] + (column & y[None, :, j])
            fp_new = (fp_image - (predicted[:, j] & ~y[:, j]))[None] + (column & ~y[None, :, j])
            scores = metric(tp_new, fp_new, truth_per_image[None] - tp_new).mean(axis=1)
            if scores.max() <= score + _TIE:
                continue
            pick = _nearest_best(scores, candidates, per_tag[j])
            per_tag[j], score, moved = candidates[pick], float(scores[pick]), True
            predicted[:, j], tp_image, fp_image = column[pick], tp_new[pick], fp_new[pick]
        if not moved:
            break
    return per_tag, metric(tp_image, fp_image, truth_per_image - tp_image)


SIGNIFICANCE = 2.0  # per-tag thresholds are chosen only when they beat the global one by this many standard errors


def tune_thresholds(
    probs: np.ndarray,
    truth: np.ndarray,
    metric: CountMetric = f2_per_image,
    grid: np.ndarray | Sequence[float] = DEFAULT_GRID,
    min_positives: int = 10,
    prior_positives: float | None = None,
    classes: Sequence[str] | None = None,
    keep_top: bool = True,
    max_passes: int = 5,
) -> Thresholds:
    """Tune one global threshold, then one per tag, to maximise the per-image metric averaged over images.

    1. Global: the grid value with the best score (the middle of a tied run, the most robust choice).
    2. Per tag: coordinate ascent from the global threshold, tags with the most positives first, until a
       pass changes nothing. Each step re-scores the *whole matrix* (the mean of per-image F2), not the tag's
       own F2: a tag's threshold only matters through the images it changes.
    3. Rare tags (the guard against tuning noise): a tag with fewer than `min_positives` positive validation
       examples keeps the global threshold. Any other tag searches only the grid shrunk towards the global
       threshold, `g + w * (grid - g)` with `w = n / (n + m)`: the credibility weight of its `n` positives
       against a prior worth `m = prior_positives` (default `min_positives`) pseudo-examples saying that it
       behaves like the average tag. A tag with 10 positives (and m = 10) can move at most half as far as the
       grid allows; one with 1,000 almost freely. A tag moves only when the score strictly improves, so the
       per-tag score is never below the global one, and per-tag thresholds are chosen only when they beat the
       global one by more than `SIGNIFICANCE` paired standard errors of the gain (tuning noise otherwise).

    Both scores are measured on the images the thresholds were fit to, so both are optimistic, the per-tag one
    more so; `gain_se` (the paired standard error of its gain over images) says whether the gain is more than
    noise. `truth` is a 0/1 matrix shaped like `probs` (see `label_matrix`). `metric` maps per-image counts
    (tp, fp, fn) to per-image scores (default F2). `keep_top` mirrors `kagglekit.submission.to_submission`,
    which always keeps each image's most probable tag, so a tuned score is exactly the validation score of the
    submission its thresholds produce.
    """
    p = np.asarray(probs, dtype=np.float64)
    y = np.asarray(truth).astype(bool)
    grid = np.asarray(grid, dtype=np.float64)
    if p.ndim != 2 or p.shape != y.shape:
        raise ValueError(f"probs and truth must be matrices of one shape, got {p.shape} and {y.shape}.")
    if len(p) == 0 or grid.size == 0:
        raise ValueError("Need at least one validation row and one grid value to tune thresholds.")
    if np.isnan(p).any():
        raise ValueError("probs contain NaN; thresholds cannot be tuned on them.")
    if classes is not None and len(classes) != p.shape[1]:
        raise ValueError(f"{len(classes)} classes for {p.shape[1]} probability columns.")
    forced = np.zeros_like(y)
    if keep_top:
        forced[np.arange(len(p)), p.argmax(axis=1)] = True
    global_threshold, global_per_image = _global(p, y, forced, grid, metric)
    global_score = float(global_per_image.mean())
    positives = y.sum(axis=0)
    m = float(min_positives if prior_positives is None else prior_positives)
    weight = np.where(positives >= min_positives, positives / np.maximum(positives + m, 1e-12), 0.0)
    per_tag, per_image = _per_tag(p, y, forced, grid, metric, weight, global_threshold, max_passes)
    score = float(per_image.mean())
    gain = per_image - global_per_image
    gain_se = float(gain.std(ddof=1) / np.sqrt(len(p))) if len(p) > 1 else 0.0
    return Thresholds(
        global_threshold=global_threshold,
        per_tag=per_tag,
        global_score=global_score,
        per_tag_score=score,
        # Per-tag thresholds fit the same rows they are scored on: trust them only when their gain is clearly
        # more than noise (two paired standard errors), else the simpler global threshold generalises better.
        chosen="per_tag" if score > global_score + max(_TIE, SIGNIFICANCE * gain_se) else "global",
        gain_se=gain_se,
        classes=None if classes is None else list(classes),
        positives=positives.astype(np.int64),
    )


def tune_for_metric(
    metric: str, probs: np.ndarray, truth: np.ndarray, classes: Sequence[str] | None = None
) -> Thresholds:
    """Thresholds tuned for a competition metric by name (the per-image F-beta metrics of kagglekit.metrics)."""
    if metric not in COUNT_METRICS:
        raise ValueError(f"No threshold tuning for metric {metric!r}; known: {', '.join(COUNT_METRICS)}.")
    return tune_thresholds(probs, truth, metric=COUNT_METRICS[metric], classes=classes)
