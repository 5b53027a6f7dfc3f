"""Competition metrics, computed on decisions exactly as they appear in a submission.

Each metric takes the truth and the predictions in submission terms (class names, a probability table, or
tag sets), so a validation score and a score of a written CSV are the same computation. scikit-learn is
imported when a metric is computed, not when the table is read (plug-ins check their metric at registration).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from kagglekit.errors import PluginError

if TYPE_CHECKING:
    import pandas as pd


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[..., float]
    greater_is_better: bool
    submission: str  # the submission kind it scores: label (class names), probs (a table), tags (tag sets)

    def __call__(self, truth, pred) -> float:
        return float(self.fn(truth, pred))


def accuracy(truth: Sequence[str], pred: Sequence[str]) -> float:
    from sklearn.metrics import accuracy_score

    return accuracy_score(list(truth), list(pred))


def log_loss(truth: Sequence[str], probs: pd.DataFrame) -> float:
    """Multi-class log loss as Kaggle's grader computes it; `probs` has one column per class (the submission's).

    Each value is clipped to [1e-15, 1 - 1e-15] and each row divided by its sum (Kaggle's metric description), so
    rows need not sum exactly to 1. scikit-learn no longer rescales (1.5+ only warns, and refuses values outside
    [0, 1]), so that is done here first.
    """
    import numpy as np
    from sklearn.metrics import log_loss as sk_log_loss

    values = np.clip(probs.to_numpy(dtype=np.float64), 1e-15, 1 - 1e-15)
    return sk_log_loss(list(truth), values / values.sum(axis=1, keepdims=True), labels=list(probs.columns))


def fbeta_samples(truth: Sequence[set[str]], pred: Sequence[set[str]], beta: float) -> float:
    """F-beta per image averaged over images (sklearn average="samples"; the macro average is another number)."""
    from sklearn.metrics import fbeta_score
    from sklearn.preprocessing import MultiLabelBinarizer

    binarizer = MultiLabelBinarizer()
    binarizer.fit([*truth, *pred])
    return fbeta_score(
        binarizer.transform(truth), binarizer.transform(pred), beta=beta, average="samples", zero_division=0
    )


def f2_samples(truth: Sequence[set[str]], pred: Sequence[set[str]]) -> float:
    """Recall weighs four times precision: missing a tag costs more than an extra one."""
    return fbeta_samples(truth, pred, beta=2.0)


def f1_samples(truth: Sequence[set[str]], pred: Sequence[set[str]]) -> float:
    """Precision and recall weigh the same."""
    return fbeta_samples(truth, pred, beta=1.0)


METRICS: dict[str, Metric] = {
    "accuracy": Metric("accuracy", accuracy, greater_is_better=True, submission="label"),
    "log_loss": Metric("log_loss", log_loss, greater_is_better=False, submission="probs"),
    "f2_samples": Metric("f2_samples", f2_samples, greater_is_better=True, submission="tags"),
    "f1_samples": Metric("f1_samples", f1_samples, greater_is_better=True, submission="tags"),
}


def get_metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise PluginError(f"Unknown metric {name!r}; known: {', '.join(METRICS)}.") from None
