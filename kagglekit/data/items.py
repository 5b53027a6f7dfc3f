"""Turning a competition's files into one item table per split.

The item table is the single place where file layout is resolved: every later step sees rows with an
`id`, an absolute `path` and one column per task, whatever the competition's folders look like.
"""

from __future__ import annotations

import hashlib
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kagglekit.competition import Competition, DicomIndex, Task
from kagglekit.data.matching import index_dicoms, match_dicoms, where_to_look
from kagglekit.errors import DataError

log = logging.getLogger(__name__)


@dataclass
class Items:
    """Training and test rows of a competition, with image paths resolved."""

    data_dir: Path
    train: pd.DataFrame  # id, path, one column per task
    test: pd.DataFrame  # id, path, in sample_submission order
    sample_submission: pd.DataFrame
    skipped: pd.DataFrame  # training rows left out, with the reason


def _read_csv(path: Path, required: list[str], what: str) -> pd.DataFrame:
    """A CSV as strings; `what` (e.g. "training rows") says what an empty table lacks."""
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except pd.errors.EmptyDataError:
        raise DataError(f"{path}: the file is empty. Is the download complete?") from None
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot be read as CSV ({error}).") from error
    frame.columns = frame.columns.str.strip()
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(frame.columns)}. "
            "Is this the right competition's file?"
        )
    if frame.empty:
        raise DataError(f"{path}: a header but no {what}. Is the download complete? Download it again.")
    return frame


def _train_paths(data_dir: Path, competition: Competition, table: pd.DataFrame) -> list[Path]:
    """Each training row's image: its template filled from the row, or its file in the DICOM index (when the
    index lacks it, the search pattern, which does not exist, so the row is skipped as missing)."""
    spec = competition.train_image
    if not isinstance(spec, DicomIndex):
        return [data_dir / spec.format(**row) for row in table.to_dict(orient="records")]
    ids = table[competition.id_column].tolist()
    found = match_dicoms(ids, index_dicoms(data_dir / spec.folder))
    return [path or data_dir / spec.folder / f"**/{uid}*" for uid, path in zip(ids, found, strict=True)]


def _test_paths(data_dir: Path, competition: Competition, ids: pd.Series) -> list[Path]:
    """Each sample-submission id's image: the first of the plug-in's templates that exists, or its DICOM. Missing
    images are a `DataError` saying where they were looked for and where similar folders or files are."""
    spec, keys = competition.test_images, ids.str.strip().tolist()
    if isinstance(spec, DicomIndex):
        found = match_dicoms(keys, index_dicoms(data_dir / spec.folder))
        candidates = [[data_dir / spec.folder / f"**/{key}*"] for key in keys]
    else:
        candidates = [[data_dir / t.format(id=key) for t in spec] for key in keys]
        found = [next((p for p in tried if p.is_file()), None) for tried in candidates]
    missing = [row for row, path in enumerate(found) if path is None]
    if missing:
        first = ", ".join(f"line {r + 2} ({ids.iloc[r]})" for r in missing[:3])
        raise DataError(
            f"{len(missing)} of the {len(ids)} test image(s) listed in {competition.sample_submission} are missing; "
            f"the submission must cover every id. First: {first}. "
            + where_to_look(data_dir, [path for r in missing for path in candidates[r]])
        )
    return found


def declared_classes(competition: Competition, task_name: str, sample: pd.DataFrame) -> list[str] | None:
    """A task's classes when they are known before training: declared by the plug-in, or the sample submission's
    columns for the target of a probability submission; None when they are learnt from the training labels."""
    task = competition.tasks[task_name]
    if task.classes is not None:
        return list(task.classes)
    if task_name == competition.target_task and competition.submission.kind == "probs":
        return [c for c in sample.columns if c != competition.id_column]
    return None


def _unknown_labels(labels: pd.Series, task: Task, classes: list[str]) -> pd.Series:
    """Per row, the labels (tags, for a multi-label task) outside `classes`, space-separated ("" when none)."""
    allowed = set(classes)
    split = (lambda v: v.split(task.label_delim)) if task.kind == "multi" else (lambda v: [v])
    return labels.map(lambda value: " ".join(label for label in split(value) if label and label not in allowed))


def _skip_reasons(train: pd.DataFrame, competition: Competition, sample: pd.DataFrame, images: bool) -> pd.Series:
    """Why each training row cannot be used ("" when it can): the first of an empty target, a label outside the
    known classes, a missing image file, or an id seen on an earlier line."""
    reasons = pd.Series("", index=train.index)
    target_column = competition.tasks[competition.target_task].column
    reasons[train[target_column] == ""] = f"empty {target_column}"
    for name, task in competition.tasks.items():
        classes = declared_classes(competition, name, sample)
        unknown = _unknown_labels(train[task.column], task, classes) if classes is not None else None
        if unknown is not None:
            fresh = (reasons == "") & (unknown != "")
            reasons[fresh] = f"unknown {task.column}: " + unknown[fresh]
    if images:
        reasons[(reasons == "") & ~train["path"].map(lambda p: Path(p).is_file())] = "image file missing"
    reasons[(reasons == "") & train["id"].duplicated(keep="first")] = "duplicate id"
    return reasons


def _report_skipped(skipped: pd.DataFrame, n_rows: int, path: Path, data_dir: Path) -> None:
    """One warning (or, when no row is left, a `DataError`) counting the skipped rows by reason, with the first."""
    kinds = skipped["reason"].str.split(":").str[0].value_counts()
    first = skipped.iloc[0]
    text = (f"{', '.join(f'{n} {kind}' for kind, n in kinds.items())} (first: line {first['line']}, id "
            f"{first['id']}, {first['reason']})")  # fmt: skip
    missing = skipped["reason"] == "image file missing"
    if missing.any():
        text += ". " + where_to_look(data_dir, [Path(p) for p in skipped.loc[missing, "path"]])
    if len(skipped) == n_rows:
        raise DataError(f"None of the {n_rows} rows of {path} is usable: {text}")
    log.warning("Skipping %d of %d training rows of %s: %s The full list is saved with the run (skipped_items.csv).",
                len(skipped), n_rows, path.name, text if text.endswith(".") else text + ".")  # fmt: skip


def load_items(competition: Competition, data_dir: Path, images: bool = True) -> Items:
    """Read the training table and sample submission and resolve every image path.

    Training rows with an empty target, a label outside the competition's known classes, a missing image or a
    repeated id are skipped and reported (a user's partial download still trains); a missing test image is an
    error, because the submission needs every id. Values are stripped of surrounding whitespace (a label "blast "
    is the class blast and the folder blast/); sample-submission ids are kept as written, since the submission
    repeats them. `images=False` reads only the tables (ids and labels): paths stay empty and no image is looked for.
    """
    data_dir = Path(data_dir)
    table = _read_csv(data_dir / competition.train_csv, competition.columns, "training rows")
    table = table.apply(lambda column: column.str.strip())
    sample = _read_sample(competition, data_dir)

    train = pd.DataFrame({"id": table[competition.id_column]})
    for task in competition.tasks.values():
        train[task.column] = table[task.column]
    train["path"] = [str(p) for p in _train_paths(data_dir, competition, table)] if images else ""

    reasons = _skip_reasons(train, competition, sample, images)
    skipped = train[reasons != ""].assign(reason=reasons[reasons != ""], line=lambda f: f.index + 2)
    if len(skipped):
        _report_skipped(skipped, len(train), data_dir / competition.train_csv, data_dir)
    train = train[reasons == ""].reset_index(drop=True)
    test = _test_table(competition, data_dir, sample, images)
    return Items(data_dir=data_dir, train=train, test=test, sample_submission=sample, skipped=skipped)


def load_test_items(competition: Competition, data_dir: Path, images: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The test rows (`id`, `path`) in the sample submission's order, and the sample submission itself: all that
    predicting a submission needs (an inference pack reads nothing else). A missing test image is a `DataError`."""
    sample = _read_sample(competition, Path(data_dir))
    return _test_table(competition, Path(data_dir), sample, images), sample


def _read_sample(competition: Competition, data_dir: Path) -> pd.DataFrame:
    return _read_csv(data_dir / competition.sample_submission, [competition.id_column], "test ids to predict")


def _test_table(competition: Competition, data_dir: Path, sample: pd.DataFrame, images: bool) -> pd.DataFrame:
    """The test rows (`id`, `path`) in the sample submission's order; a repeated id is a `DataError`."""
    ids = sample[competition.id_column]
    if ids.duplicated().any():
        raise DataError(f"{competition.sample_submission}: duplicate id {ids[ids.duplicated()].iloc[0]!r}.")
    paths = [str(p) for p in _test_paths(data_dir, competition, ids)] if images else ""
    return pd.DataFrame({"id": ids, "path": paths})


def fingerprint(items: Items) -> str | None:
    """A short hash of the test set (each id and its image file's size): two submissions with the same fingerprint
    predict the same images, so comparing them is meaningful. The original files count (`source`, once the table
    points at the image cache). None when the image paths are not resolved."""
    files = items.test["source"] if "source" in items.test else items.test["path"]
    if not files.astype(bool).all():
        return None
    sizes = [f"{i}\t{Path(p).stat().st_size if Path(p).is_file() else '-'}" for i, p in zip(
        items.test["id"], files, strict=True)]  # fmt: skip
    return hashlib.sha256("\n".join(sorted(sizes)).encode()).hexdigest()[:16]


def vocabularies(competition: Competition, items: Items) -> dict[str, list[str]]:
    """The classes of each task: declared by the plug-in, else the sample submission's columns for a
    probability submission, else every label seen in training (sorted). A label outside declared classes (a
    table `load_items` did not filter) is a `DataError` naming its line."""
    vocab = {}
    for name, task in competition.tasks.items():
        labels = items.train[task.column]
        classes = declared_classes(competition, name, items.sample_submission)
        if classes is None:
            multi = task.kind == "multi"
            classes = sorted({t for v in labels for t in v.split(task.label_delim) if t} if multi else set(labels))
        unknown = _unknown_labels(labels, task, classes)
        if (unknown != "").any():
            row = int(np.flatnonzero(unknown != "")[0])
            raise DataError(
                f"{competition.train_csv}: column {task.column} has label(s) outside the competition's {len(classes)} "
                f"classes, first {unknown.iloc[row]!r} (id {items.train['id'].iloc[row]}); fix or drop those rows "
                "(load_items skips them)."
            )
        vocab[name] = classes
    return vocab
