"""Label corrections: a CSV of `id,action,label` rows that leaves training rows out (`exclude`) or gives them
another label (`relabel`), applied to a run's training table in memory. The user's data files are never edited.

`kagglekit review` writes `review.csv` with empty `action` and `label` columns, so the reviewed file itself can be
passed back as the corrections: rows with an empty action are ignored, and so are columns other than these three.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from kagglekit.competition import Competition
from kagglekit.errors import DataError

ACTIONS = ("exclude", "relabel")
COLUMNS = ["id", "action", "label"]


def read_corrections(path: Path) -> pd.DataFrame:
    """The marked rows of a corrections CSV: `id, action, label, line` (its line in the file; the header is line 1).

    Raises `DataError` naming the file and line for a missing column, an unknown action, a relabel without a
    label, or an id marked twice.
    """
    path = Path(path)
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot be read as a corrections CSV ({error}).") from error
    missing = [c for c in COLUMNS if c not in frame.columns]
    if missing:
        raise DataError(f"{path}: missing column(s) {', '.join(missing)}; corrections need columns id,action,label.")
    frame = frame[COLUMNS].apply(lambda column: column.str.strip()).assign(line=frame.index + 2)
    frame["action"] = frame["action"].str.lower()
    marked = frame[frame["action"] != ""]
    problems = [
        f"line {row.line} ({row.id}): " + (
            f"unknown action {row.action!r}; use exclude or relabel" if row.action not in ACTIONS
            else "relabel needs the new label in the label column"
        )
        for row in marked.itertuples()
        if row.action not in ACTIONS or (row.action == "relabel" and row.label == "")
    ]  # fmt: skip
    twice = marked[marked["id"].duplicated(keep="first")]
    problems += [f"line {row.line}: id {row.id!r} is marked more than once" for row in twice.itertuples()]
    if problems:
        raise DataError(f"{path}: {len(problems)} problem(s): {'; '.join(problems[:5])}.")
    return marked.reset_index(drop=True)


def _check_label(label: str, classes: list[str], delim: str | None) -> str | None:
    """What is wrong with a new label (None when every class or tag of it is known)."""
    tags = [t for t in label.split(delim)] if delim else [label]
    unknown = [t for t in tags if t not in classes]
    return f"label {', '.join(unknown)} is not among the {len(classes)} classes" if unknown else None


def apply_corrections(
    train: pd.DataFrame, corrections: pd.DataFrame, competition: Competition, vocab: dict[str, list[str]]
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """`(corrected training table, what changed)`: excluded rows dropped, relabelled rows given their new label
    in the target task's column, every other row and column unchanged. The second frame has one row per
    correction: `id, action, old_label, new_label`.

    `train` is an item table (`id` + one column per task), `corrections` what `read_corrections` returns. Raises
    `DataError` naming the line for an id that is not a training row, or a label outside the classes.
    """
    task = competition.tasks[competition.target_task]
    classes = vocab[competition.target_task]
    known = set(train["id"])
    problems = [f"line {row.line}: id {row.id!r} is not a training row" for row in corrections.itertuples()
                if row.id not in known]  # fmt: skip
    for row in corrections[corrections["action"] == "relabel"].itertuples():
        wrong = _check_label(row.label, classes, task.label_delim if task.kind == "multi" else None)
        problems += [f"line {row.line} ({row.id}): {wrong}"] if wrong else []
    if problems:
        raise DataError(f"Corrections: {len(problems)} problem(s): {'; '.join(problems[:5])}.")
    old = train.set_index("id")[task.column]
    changed = pd.DataFrame({
        "id": corrections["id"], "action": corrections["action"],
        "old_label": corrections["id"].map(old).to_numpy(),
        "new_label": corrections["label"].where(corrections["action"] == "relabel", ""),
    })  # fmt: skip
    relabel = changed[changed["action"] == "relabel"].set_index("id")["new_label"]
    corrected = train[~train["id"].isin(set(changed.loc[changed["action"] == "exclude", "id"]))].copy()
    corrected[task.column] = corrected["id"].map(relabel).fillna(corrected[task.column])
    return corrected.reset_index(drop=True), changed
