"""Competition metrics, computed on decisions exactly as they appear in a submission.

Each metric takes the truth and the predictions in submission terms (class names, a probability table, or
tag sets), so a validation score and a score of a written CSV are the same computation.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
from sklearn.metrics import accuracy_score, fbeta_score
from sklearn.metrics import log_loss as sk_log_loss
from sklearn.preprocessing import MultiLabelBinarizer


@dataclass(frozen=True)
class Metric:
    name: str
    fn: Callable[..., float]
    greater_is_better: bool

    def __call__(self, truth, pred) -> float:
        return float(self.fn(truth, pred))


def accuracy(truth: Sequence[str], pred: Sequence[str]) -> float:
    return accuracy_score(list(truth), list(pred))


def log_loss(truth: Sequence[str], probs: pd.DataFrame) -> float:
    """Multi-class log loss; `probs` has one column per class (the submission's columns)."""
    return sk_log_loss(list(truth), probs.to_numpy(dtype=np.float64), labels=list(probs.columns))


def fbeta_samples(truth: Sequence[set[str]], pred: Sequence[set[str]], beta: float) -> float:
    """F-beta per image averaged over images (sklearn average="samples"; the macro average is another number)."""
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
    "accuracy": Metric("accuracy", accuracy, greater_is_better=True),
    "log_loss": Metric("log_loss", log_loss, greater_is_better=False),
    "f2_samples": Metric("f2_samples", f2_samples, greater_is_better=True),
    "f1_samples": Metric("f1_samples", f1_samples, greater_is_better=True),
}


def get_metric(name: str) -> Metric:
    try:
        return METRICS[name]
    except KeyError:
        raise KeyError(f"Unknown metric {name!r}; known: {', '.join(METRICS)}.") from None
