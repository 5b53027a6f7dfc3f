"""Turning probabilities into the competition's CSV, writing it safely, and scoring it.

The same functions build the validation "submission" and the real one, so the validation score printed by
a run is computed exactly as Kaggle would compute the score of the file it writes.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from kagglekit._io import timestamp, write_json, write_new
from kagglekit.competition import Competition
from kagglekit.defaults import submissions_dir
from kagglekit.ensemble.probabilities import Probabilities
from kagglekit.errors import SubmissionError
from kagglekit.submission.metrics import get_metric
from kagglekit.submission.sidecar import source_path


def _class_columns(competition: Competition, frame: pd.DataFrame) -> list[str]:
    return [c for c in frame.columns if c != competition.id_column]


def to_submission(
    probs: Probabilities,
    competition: Competition,
    template: pd.DataFrame | None = None,
    thresholds: np.ndarray | float = 0.5,
) -> pd.DataFrame:
    """The submission table for `probs`.

    `template` is the sample submission: its ids (and, for probability submissions, its column order) are
    followed exactly. Without it the table follows `probs`' own ids and class order (validation scoring).
    `thresholds` (one per class, or one for all) decide tags in multi-label submissions.
    """
    task = competition.target_task
    vocab = probs.vocab[task]
    matrix = probs.tasks[task].astype(np.float64)
    ids = list(probs.ids)
    if template is not None:
        wanted = template[competition.id_column].astype(str).tolist()
        missing = sorted(set(wanted) - set(ids))
        if missing:
            raise SubmissionError(
                f"No predictions for {len(missing)} id(s) of the sample submission, e.g. {missing[:3]}."
            )
        matrix, ids = probs.subset(wanted).tasks[task].astype(np.float64), wanted
    spec = competition.submission
    frame = pd.DataFrame({competition.id_column: ids})
    if spec.kind == "label":
        frame[spec.column] = np.asarray(vocab, dtype=object)[matrix.argmax(1)]
    elif spec.kind == "tags":
        chosen = matrix >= np.broadcast_to(np.asarray(thresholds, dtype=np.float64), matrix.shape[1:])
        chosen[np.arange(len(matrix)), matrix.argmax(1)] = True  # never an empty cell: keep the best tag
        frame[spec.column] = [" ".join(np.asarray(vocab)[row]) for row in chosen]
    else:
        clipped = np.clip(matrix, spec.clip, 1 - spec.clip)
        clipped /= clipped.sum(axis=1, keepdims=True)
        columns = vocab if template is None else _class_columns(competition, template)
        if sorted(columns) != sorted(vocab):
            raise SubmissionError(
                f"The sample submission's class columns differ from the trained classes: "
                f"{sorted(set(columns) ^ set(vocab))[:5]}."
            )
        order = [vocab.index(c) for c in columns]
        frame = pd.concat([frame, pd.DataFrame(clipped[:, order], columns=columns)], axis=1)
    return frame


def decisions(frame: pd.DataFrame, competition: Competition):
    """A submission's predictions as the metric takes them, indexed by id."""
    indexed = frame.set_index(frame[competition.id_column].astype(str))
    spec = competition.submission
    if spec.kind == "label":
        return indexed[spec.column].astype(str)
    if spec.kind == "tags":
        return indexed[spec.column].astype(str).map(lambda cell: frozenset(cell.split()))
    return indexed[_class_columns(competition, frame)].astype(np.float64)


def truth(answers: pd.DataFrame, competition: Competition) -> pd.Series:
    """The answers (id + target column, as in the training table) as the metric takes them, by id."""
    task = competition.tasks[competition.target_task]
    labels = answers.set_index(answers[competition.id_column].astype(str))[task.column].astype(str)
    return labels.map(lambda cell: frozenset(cell.split(task.label_delim))) if task.kind == "multi" else labels


def score_submission(submission: pd.DataFrame, answers: pd.DataFrame, competition: Competition) -> float:
    """The competition metric of `submission` against `answers` (matched by id, every id required)."""
    predicted, expected = decisions(submission, competition), truth(answers, competition)
    missing = expected.index.difference(predicted.index)
    if len(missing):
        raise SubmissionError(f"The submission lacks {len(missing)} answered id(s), e.g. {list(missing[:3])}.")
    predicted = predicted.loc[expected.index]
    return get_metric(competition.metric)(
        expected.tolist(), predicted if isinstance(predicted, pd.DataFrame) else predicted.tolist()
    )


def answers_for(train: pd.DataFrame, ids: list[str], competition: Competition) -> pd.DataFrame:
    """The truth of training rows `ids` (of an item table) in the answers format: id column + target column."""
    column = competition.tasks[competition.target_task].column
    rows = train.set_index("id").loc[ids]
    return pd.DataFrame({competition.id_column: ids, column: rows[column].to_numpy()})


def score_validation(
    probs: Probabilities, train: pd.DataFrame, competition: Competition, thresholds: np.ndarray | float = 0.5
) -> float:
    """Score validation probabilities of training rows exactly as the submission built from them is scored."""
    frame = to_submission(probs, competition, thresholds=thresholds)
    return score_submission(frame, answers_for(train, probs.ids, competition), competition)


def write_submission(
    frame: pd.DataFrame,
    competition: Competition,
    name: str,
    folder: Path | None = None,
    run: Path | None = None,
    test_data: dict | None = None,
) -> Path:
    """Write `<folder>/<competition>/<timestamp>_<name>.csv` atomically; an existing file is never replaced.

    `folder` defaults to `kagglekit.defaults.submissions_dir()` (`submissions/`, or under a Kaggle notebook's
    working folder). `run`, the run folder that made the file, and `test_data` (`{"data": folder, "fingerprint":
    ...}`, see `kagglekit.data.items.fingerprint`) are recorded in a `.source.json` sidecar, so `kagglekit submit`
    finds the run wherever it lives and checks compare only submissions made for the same test images.
    """
    path = Path(folder or submissions_dir()) / competition.name / f"{timestamp()}_{name}.csv"
    path = write_new(path, lambda tmp: frame.to_csv(tmp, index=False))
    if run is not None or test_data:
        source = {"run": str(Path(run).resolve()) if run else None, "competition": competition.name}
        write_json(source_path(path), {**source, **({"test_data": test_data} if test_data else {})})
    return path
