"""The report's sections about what the model gets wrong, from the ensemble's validation probabilities: confusion
matrix and per-class precision/recall (per-tag F-scores and thresholds for multi-label targets), calibration,
the members' correlation, and the top-loss gallery.

This is what fastai's `ClassificationInterpretation` shows for one learner (`confusion_matrix`, `most_confused`,
`plot_top_losses`), computed here for the ensemble from its saved probabilities with scikit-learn's metrics.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from kagglekit.ensemble.combine import item_losses
from kagglekit.ensemble.probabilities import Probabilities
from kagglekit.ensemble.thresholds import label_matrix
from kagglekit.pipeline.data import Data
from kagglekit.report import figures
from kagglekit.report.html import card, grid, image, paragraph, table
from kagglekit.report.pictures import thumbnails
from kagglekit.report.run_files import RunFiles
from kagglekit.submission.build import answers_for, to_submission

BETA = {"f2_samples": 2.0, "f1_samples": 1.0}  # the F-beta of each per-image metric, for per-tag F-scores
GALLERY = 24  # images in the top-loss gallery
CONFUSED_PAIRS = 10


@dataclass
class Judged:
    """Validation rows with their truth and the ensemble's decision: `probs` (rows x classes of the target task),
    `truth` and `predicted` as the submission writes labels (tag strings for multi-label), `losses` per row."""

    ids: list[str]
    classes: list[str]
    probs: np.ndarray
    truth: list[str]
    predicted: list[str]
    losses: np.ndarray
    multi: bool
    delim: str

    @property
    def probability(self) -> np.ndarray:
        """The probability of each predicted label: its class's (single-label), or the predicted tag set's as
        independent tags (multi-label: the product of p for the predicted tags and 1 - p for the others)."""
        if not self.multi:
            return self.probs[np.arange(len(self.ids)), [self.classes.index(p) for p in self.predicted]]
        predicted = np.array([[c in set(p.split()) for c in self.classes] for p in self.predicted], dtype=bool)
        return np.where(predicted, self.probs, 1 - self.probs).prod(axis=1)

    @property
    def wrong(self) -> np.ndarray:
        """Whether each prediction differs from the given label (as tag sets for multi-label)."""
        if self.multi:
            return np.array([set(t.split(self.delim)) - {""} != set(p.split())
                             for t, p in zip(self.truth, self.predicted, strict=True)])  # fmt: skip
        return np.array([t != p for t, p in zip(self.truth, self.predicted, strict=True)])


def judge(probs: Probabilities, data: Data, cutoffs: np.ndarray | float = 0.5) -> Judged:
    """The rows of `probs` (validation probabilities of training rows) against their labels, decided exactly as the
    submission decides (`to_submission`, with the run's `cutoffs` for tags)."""
    competition = data.competition
    target, task = competition.target_task, competition.tasks[competition.target_task]
    known = set(data.items.train["id"])
    probs = probs.subset([i for i in probs.ids if i in known])
    truth = answers_for(data.items.train, probs.ids, competition)[task.column].astype(str).tolist()
    decided = to_submission(probs, competition, thresholds=cutoffs)
    matrix, classes = probs.tasks[target].astype(np.float64), probs.vocab[target]
    if competition.submission.kind == "tags":
        predicted = decided[competition.submission.column].astype(str).tolist()
    else:
        predicted = list(np.asarray(classes, dtype=object)[matrix.argmax(1)])
    losses = item_losses(matrix, truth, classes, task.kind, task.label_delim)
    return Judged(list(probs.ids), classes, matrix, truth, predicted, losses, task.kind == "multi", task.label_delim)


def _single_label(j: Judged, data: Data) -> str:
    from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

    counts = confusion_matrix(j.truth, j.predicted, labels=j.classes)
    with np.errstate(invalid="ignore", divide="ignore"):
        normalised = np.nan_to_num(counts / counts.sum(axis=1, keepdims=True))
    precision, recall, f1, support = precision_recall_fscore_support(
        j.truth, j.predicted, labels=j.classes, zero_division=0
    )
    column = data.competition.tasks[data.competition.target_task].column
    trained = data.items.train[column].value_counts().reindex(j.classes, fill_value=0)
    per_class = pd.DataFrame({"class": j.classes, "precision": precision, "recall": recall, "F1": f1,
                              "valid rows": support, "training rows": trained.to_numpy()})  # fmt: skip
    off = counts.copy()
    np.fill_diagonal(off, 0)
    pairs = [(j.classes[a], j.classes[b], int(off[a, b])) for a, b in zip(*np.nonzero(off), strict=True)]
    confused = pd.DataFrame(sorted(pairs, key=lambda p: -p[2])[:CONFUSED_PAIRS],
                            columns=["true class", "predicted as", "rows"])  # fmt: skip
    return (image(figures.confusion_png(normalised, j.classes), "confusion matrix")
            + "<h3>Per class</h3>" + table(per_class)
            + "<h3>Most confused</h3>" + (table(confused) if len(confused) else paragraph("No mistakes.")))  # fmt: skip


def _multi_label(j: Judged, run: RunFiles, data: Data) -> str:
    from sklearn.metrics import precision_recall_fscore_support

    truth = label_matrix(j.truth, j.classes, j.delim)
    predicted = label_matrix(j.predicted, j.classes, " ")
    beta = BETA.get(data.competition.metric, 1.0)
    precision, recall, fbeta, support = precision_recall_fscore_support(
        truth, predicted, beta=beta, average=None, zero_division=0
    )
    thresholds = run.thresholds.thresholds if run.thresholds is not None else np.full(len(j.classes), 0.5)
    trained = label_matrix(data.items.train[data.competition.tasks[data.competition.target_task].column].tolist(),
                           j.classes, j.delim).sum(axis=0)  # fmt: skip
    per_tag = pd.DataFrame({"tag": j.classes, "threshold": thresholds, "precision": precision, "recall": recall,
                            f"F{beta:g}": fbeta, "valid positives": support,
                            "training positives": trained})  # fmt: skip
    chosen = run.thresholds.chosen.replace("_", " ") if run.thresholds is not None else "0.5 for every tag"
    return paragraph(f"Per tag, at the submission's thresholds ({chosen}); each image also keeps its most "
                     "probable tag.") + table(per_tag)  # fmt: skip


def mistakes(run: RunFiles, data: Data, j: Judged) -> str:
    """Normalised confusion matrix, per-class precision/recall and the most confused pairs; per-tag F-scores and
    thresholds for a multi-label target."""
    head = paragraph(f"The ensemble on its {len(j.ids)} held-out validation rows.")
    return head + (_multi_label(j, run, data) if j.multi else _single_label(j, data))


def calibration(run: RunFiles, data: Data, j: Judged) -> str:
    """Reliability of the top class's probability, for the ensemble and each member (probability submissions)."""
    from sklearn.calibration import calibration_curve

    classes = np.asarray(j.classes, dtype=object)
    truth = np.asarray(j.truth, dtype=object)
    curves = {}
    models = [("ensemble", j.probs)] + [
        (m.name, m.valid.subset(j.ids).tasks[data.competition.target_task]) for m in run.members if m.in_ensemble
    ]
    for name, probs in models:
        correct = classes[probs.argmax(1)] == truth
        observed, predicted = calibration_curve(correct, probs.max(1), n_bins=10, strategy="uniform")
        curves[name] = (observed, predicted)
    text = paragraph("Points on the diagonal: when the model says p, it is right p of the time. Points below it "
                     "are over-confident, which log loss punishes hardest.")  # fmt: skip
    return text + image(figures.calibration_png(curves, j.probs.max(1)), "calibration")


def correlation(run: RunFiles, data: Data, j: Judged) -> str:
    """Pearson correlation of the members' validation probabilities on their common rows: members that agree
    closely add little to each other in an ensemble."""
    if len(run.members) < 2:
        return paragraph("One member: nothing to correlate.")
    target = data.competition.target_task
    others = [set(m.valid.ids) for m in run.members[1:]]
    common = [i for i in run.members[0].valid.ids if all(i in ids for ids in others)]
    names = [m.name + ("" if m.in_ensemble else " (left out)") for m in run.members]
    vectors = np.stack([m.valid.subset(common).tasks[target].ravel() for m in run.members]).astype(np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):  # a constant member has no correlation: shown as n/a
        matrix = pd.DataFrame(np.corrcoef(vectors), index=names, columns=names)
    agreement = pd.DataFrame(
        [[float(np.mean(a.argmax(1) == b.argmax(1))) for b in vectors.reshape(len(names), len(common), -1)]
         for a in vectors.reshape(len(names), len(common), -1)], index=names, columns=names,
    ).reset_index(names="agreement of the top class")  # fmt: skip
    return (paragraph(f"On the {len(common)} validation rows all members predicted.")
            + image(figures.correlation_png(matrix), "member correlation") + table(agreement, digits=2))  # fmt: skip


def top_losses(run: RunFiles, data: Data, j: Judged) -> str:
    """The validation images the ensemble is most wrong about: thumbnail, true label, prediction, probability,
    loss (`kagglekit review` ranks every training row this way)."""
    probability, wrong = j.probability, j.wrong
    shown = np.argsort(-j.losses, kind="stable")[:GALLERY]
    cards = []
    for row, uri in zip(shown, thumbnails(data.items.train, [j.ids[row] for row in shown], data.competition),
                        strict=True):  # fmt: skip
        lines = [f"true: {j.truth[row]}", f"predicted: {j.predicted[row]} ({probability[row]:.2f})",
                 f"loss {j.losses[row]:.3f}"]  # fmt: skip
        cards.append(card(uri, j.ids[row], lines, bool(wrong[row])))
    return paragraph(f"The {len(cards)} validation images with the highest loss under the ensemble "
                     "(red: the prediction is wrong).") + grid(cards)  # fmt: skip
