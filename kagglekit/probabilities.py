"""Probabilities are the currency between steps: each member's TTA probabilities for the validation and
test rows are saved to disk, and ensembles average probabilities (never votes), so a member trained
elsewhere or yesterday can join an ensemble without retraining. numpy and pandas only: cheap to import.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kagglekit.files import atomic_write


@dataclass
class Probabilities:
    """Per-task probability matrices for a list of ids (rows aligned with `ids`)."""

    ids: list[str]
    tasks: dict[str, np.ndarray]
    vocab: dict[str, list[str]]

    def save(self, folder: Path, split: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / f"{split}_ids.csv", lambda tmp: pd.Series(self.ids, name="id").to_csv(tmp, index=False))
        for task, probs in self.tasks.items():
            frame = pd.DataFrame(probs, columns=self.vocab[task])
            atomic_write(
                folder / f"{split}_{task}.csv.gz",
                lambda tmp, f=frame: f.to_csv(tmp, index=False, compression="gzip"),
            )

    @classmethod
    def load(cls, folder: Path, split: str) -> Probabilities:
        ids = pd.read_csv(folder / f"{split}_ids.csv", dtype={"id": str})["id"].tolist()
        tasks, vocab = {}, {}
        for path in sorted(folder.glob(f"{split}_*.csv.gz")):
            task = path.name[len(split) + 1 : -len(".csv.gz")]
            frame = pd.read_csv(path, compression="gzip")
            tasks[task], vocab[task] = frame.to_numpy(dtype=np.float32), list(frame.columns)
        return cls(ids, tasks, vocab)

    def concat(self, *others: Probabilities) -> Probabilities:
        """Rows of all (same tasks and classes): out-of-fold parts, or predictions plus fallbacks."""
        if any(other.vocab != self.vocab for other in others):
            raise ValueError("Cannot concatenate probabilities over different tasks or classes.")
        tasks = {t: np.concatenate([p, *(o.tasks[t] for o in others)]) for t, p in self.tasks.items()}
        return Probabilities([*self.ids, *(i for o in others for i in o.ids)], tasks, self.vocab)

    def subset(self, ids: Sequence[str]) -> Probabilities:
        position = {i: n for n, i in enumerate(self.ids)}
        rows = [position[i] for i in ids]
        return Probabilities(list(ids), {t: p[rows] for t, p in self.tasks.items()}, self.vocab)


def ensemble(members: Sequence[Probabilities], weights: Sequence[float] | None = None) -> Probabilities:
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
        return sign * score(ensemble(members, weights / weights.sum()))

    start = np.zeros(len(members))
    best = minimize(objective, start, method="Nelder-Mead", options={"maxiter": 200, "xatol": 1e-3, "fatol": 1e-6})
    chosen = best.x if best.fun < objective(start) else start  # never worse than equal weights
    weights = np.exp(chosen - chosen.max())
    return (weights / weights.sum()).round(4).tolist()
