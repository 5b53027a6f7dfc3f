"""Combining members' probabilities: the weighted mean (never a vote), weights fitted to validation rows,
per-row losses, and the training prior that stands in for a test image no member could read."""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd

from kagglekit.competition import Competition
from kagglekit.ensemble.probabilities import Probabilities


def mean_probabilities(members: Sequence[Probabilities], weights: Sequence[float] | None = None) -> Probabilities:
    """The (weighted) mean of the members' probabilities, on the ids every member has, per task."""
    if not members:
        raise ValueError("An ensemble needs at least one member.")
    weights = np.ones(len(members)) if weights is None else np.asarray(weights, dtype=np.float64)
    if len(weights) != len(members) or weights.sum() <= 0 or (weights < 0).any():
        raise ValueError(f"Need one non-negative weight per member with a positive sum, got {list(weights)}.")
    common = set(members[0].ids).intersection(*(m.ids for m in members[1:]))
    ids = [i for i in members[0].ids if i in common]
    aligned = [m.subset(ids) for m in members]
    tasks, vocab = {}, {}
    for task in dict.fromkeys(t for m in members for t in m.tasks):  # every task any member predicts
        holders = [(m, w) for m, w in zip(aligned, weights, strict=True) if task in m.tasks]
        vocab[task] = holders[0][0].vocab[task]
        if any(m.vocab[task] != vocab[task] for m, _ in holders):
            raise ValueError(f"Members disagree on the classes of task {task!r}; they cannot be averaged.")
        total = sum(w for _, w in holders)
        tasks[task] = (sum(w * m.tasks[task].astype(np.float64) for m, w in holders) / total).astype(np.float32)
    return Probabilities(ids, tasks, vocab)


def item_losses(
    probs: np.ndarray, truth: Sequence[str], vocab: Sequence[str], kind: str, delim: str = " "
) -> np.ndarray:
    """Per-row loss of probabilities against labels: cross-entropy, or mean binary cross-entropy (multi)."""
    eps = 1e-7
    p = np.clip(np.asarray(probs, dtype=np.float64), eps, 1 - eps)
    position = {c: i for i, c in enumerate(vocab)}
    if kind == "single":
        return -np.log(p[np.arange(len(p)), [position[t] for t in truth]])
    y = np.zeros_like(p)
    for row, labels in enumerate(truth):
        y[row, [position[t] for t in str(labels).split(delim) if t]] = 1
    return -(y * np.log(p) + (1 - y) * np.log(1 - p)).mean(axis=1)


def tune_weights(
    members: Sequence[Probabilities], score: Callable[[Probabilities], float], greater_is_better: bool
) -> list[float]:
    """Non-negative ensemble weights (summing to 1) that optimise `score` of the weighted mean.

    Nelder-Mead on softmax-parametrised weights: works for non-differentiable metrics such as accuracy.
    Scored on the same rows it is fit to, so the tuned score is optimistic; report it as such.
    """
    from scipy.optimize import minimize

    sign = -1.0 if greater_is_better else 1.0

    def objective(logits: np.ndarray) -> float:
        weights = np.exp(logits - logits.max())
        return sign * score(mean_probabilities(members, weights / weights.sum()))

    start = np.zeros(len(members))
    best = minimize(objective, start, method="Nelder-Mead", options={"maxiter": 200, "xatol": 1e-3, "fatol": 1e-6})
    chosen = best.x if best.fun < objective(start) else start  # never worse than equal weights
    weights = np.exp(chosen - chosen.max())
    return (weights / weights.sum()).round(4).tolist()


def class_shares(train: pd.DataFrame, competition: Competition, vocab: dict[str, list[str]]) -> dict[str, np.ndarray]:
    """Every task's class frequencies in `train` (an item table), in `vocab` order: the share of rows with each class
    (summing to 1 for single-label tasks; per-tag rates for multi-label ones). An inference pack carries them, so the
    training prior exists where the training table does not."""
    shares = {}
    for name, classes in vocab.items():
        task = competition.tasks[name]
        labels = train[task.column]
        if task.kind == "multi":
            labels = labels.str.split(task.label_delim).explode()
        share = labels.value_counts().reindex(classes, fill_value=0).to_numpy(dtype=np.float32) / len(train)
        shares[name] = share / share.sum() if task.kind == "single" else share
    return shares


def prior_probabilities(
    shares: dict[str, np.ndarray], vocab: dict[str, list[str]], ids: Sequence[str]
) -> Probabilities:
    """The class shares (see `class_shares`) as the prediction for each of `ids`: the best constant prediction."""
    tasks = {name: np.tile(np.asarray(shares[name], dtype=np.float32), (len(ids), 1)) for name in vocab}
    return Probabilities(list(ids), tasks, vocab)


def training_prior(
    train: pd.DataFrame, competition: Competition, vocab: dict[str, list[str]], ids: Sequence[str]
) -> Probabilities:
    """Every task's class frequencies in `train` (an item table), as the prediction for each of `ids`: the best
    constant prediction, for test images no member could read."""
    return prior_probabilities(class_shares(train, competition, vocab), vocab, ids)
