"""Turning a competition's files into one item table per split.

The item table is the single place where file layout is resolved: every later step sees rows with an
`id`, an absolute `path` and one column per task, whatever the competition's folders look like.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
from rich.progress import track

from kagglekit.competition import Competition, DicomIndex
from kagglekit.errors import DataError, DicomReadError

log = logging.getLogger(__name__)


@dataclass
class Items:
    """Training and test rows of a competition, with image paths resolved."""

    data_dir: Path
    train: pd.DataFrame  # id, path, one column per task
    test: pd.DataFrame  # id, path, in sample_submission order
    sample_submission: pd.DataFrame
    skipped: pd.DataFrame  # training rows left out, with the reason


def _read_csv(path: Path, required: list[str]) -> pd.DataFrame:
    try:
        frame = pd.read_csv(path, dtype=str, keep_default_na=False)
    except (OSError, pd.errors.ParserError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot be read as CSV ({error}).") from error
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise DataError(
            f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(frame.columns)}. "
            "Is this the right competition's file?"
        )
    return frame


def index_dicoms(folder: Path) -> dict[str, Path]:
    """Every DICOM under `folder` by its header's SOPInstanceUID; files whose name disagrees are logged."""
    from kagglekit.data.dicom import dicom_uid

    index: dict[str, Path] = {}
    unreadable, renamed = [], []
    files = sorted(p for p in folder.rglob("*") if p.is_file() and p.suffix.lower() == ".dcm")
    for path in track(files, description=f"Reading DICOM headers in {folder.name}/", transient=True):
        try:
            uid = dicom_uid(path)
        except DicomReadError as error:
            unreadable.append(str(error))
            continue
        if not path.stem.startswith(uid):
            renamed.append(f"{path.name} holds {uid}")
        index.setdefault(uid, path)
    if renamed:
        log.warning("%d DICOM file name(s) disagree with their SOPInstanceUID (keyed by the header): %s",
                    len(renamed), "; ".join(renamed[:3]))  # fmt: skip
    if unreadable:
        log.warning("%d DICOM file(s) have no readable SOPInstanceUID: %s", len(unreadable), "; ".join(unreadable[:3]))
    return index


def _train_paths(data_dir: Path, competition: Competition, table: pd.DataFrame) -> list[str]:
    """Each training row's image: its template filled from the row, or its file in the DICOM index (when the
    index lacks it, the search pattern, which does not exist, so the row is skipped as missing)."""
    spec = competition.train_image
    if not isinstance(spec, DicomIndex):
        return [str(data_dir / spec.format(**row)) for row in table.to_dict(orient="records")]
    index = index_dicoms(data_dir / spec.folder)
    return [str(index.get(uid, data_dir / spec.folder / f"**/{uid}*")) for uid in table[competition.id_column]]


def _resolve_test_paths(data_dir: Path, competition: Competition, ids: pd.Series) -> list[Path]:
    spec = competition.test_images
    index = index_dicoms(data_dir / spec.folder) if isinstance(spec, DicomIndex) else None
    paths, missing = [], []
    for row, image_id in enumerate(ids, start=2):
        if index is not None:
            candidates = [data_dir / spec.folder / f"**/{image_id}*"]
            found = index.get(image_id)
        else:
            candidates = [data_dir / t.format(id=image_id) for t in spec]
            found = next((p for p in candidates if p.is_file()), None)
        if found is None:
            missing.append(f"line {row} ({image_id}): tried {', '.join(str(c) for c in candidates)}")
        paths.append(found)
    if missing:
        raise DataError(
            f"{len(missing)} test image(s) listed in {competition.sample_submission} are missing; the "
            f"submission must cover every id, so the download is incomplete. First: {'; '.join(missing[:3])}"
        )
    return paths


def load_items(competition: Competition, data_dir: Path, images: bool = True) -> Items:
    """Read the training table and sample submission and resolve every image path.

    Training rows with an empty label or a missing image are skipped and reported (a user's partial
    download still trains); a missing test image is an error, because the submission needs every id.
    `images=False` reads only the tables (ids and labels): paths stay empty and no image is looked for.
    """
    data_dir = Path(data_dir)
    table = _read_csv(data_dir / competition.train_csv, required=competition.columns)

    train = pd.DataFrame({"id": table[competition.id_column]})
    for task in competition.tasks.values():
        train[task.column] = table[task.column].str.strip()
    train["path"] = _train_paths(data_dir, competition, table) if images else ""

    reasons = pd.Series("", index=train.index)
    target_column = competition.tasks[competition.target_task].column
    reasons[train[target_column] == ""] = f"empty {target_column}"
    if images:
        reasons[(reasons == "") & ~train["path"].map(lambda p: Path(p).is_file())] = "image file missing"
    duplicated = train["id"].duplicated(keep="first")
    reasons[(reasons == "") & duplicated] = "duplicate id"
    skipped = train[reasons != ""].assign(reason=reasons[reasons != ""], line=lambda f: f.index + 2)
    if len(skipped) == len(train):
        raise DataError(
            f"None of the {len(train)} rows of {data_dir / competition.train_csv} is usable "
            f"(first: line {skipped['line'].iloc[0]}, {skipped['reason'].iloc[0]}: {skipped['path'].iloc[0]})."
        )
    if len(skipped):
        log.warning(
            "Skipping %d of %d training rows of %s (first: line %d, %s). The full list is saved with the run.",
            len(skipped), len(train), competition.train_csv, skipped["line"].iloc[0], skipped["reason"].iloc[0],
        )  # fmt: skip
    train = train[reasons == ""].reset_index(drop=True)
    test, sample = load_test_items(competition, data_dir, images)
    return Items(data_dir=data_dir, train=train, test=test, sample_submission=sample, skipped=skipped)


def load_test_items(competition: Competition, data_dir: Path, images: bool = True) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The test rows (`id`, `path`) in the sample submission's order, and the sample submission itself: all that
    predicting a submission needs (an inference pack reads nothing else). A missing test image is a `DataError`."""
    sample = _read_csv(Path(data_dir) / competition.sample_submission, required=[competition.id_column])
    ids = sample[competition.id_column]
    if ids.duplicated().any():
        raise DataError(f"{competition.sample_submission}: duplicate id {ids[ids.duplicated()].iloc[0]!r}.")
    paths = [str(p) for p in _resolve_test_paths(Path(data_dir), competition, ids)] if images else ""
    return pd.DataFrame({"id": ids, "path": paths}), sample


def vocabularies(competition: Competition, items: Items) -> dict[str, list[str]]:
    """The classes of each task: declared by the plug-in, else the sample submission's columns for a
    probability submission, else every label seen in training (sorted)."""
    vocab = {}
    for name, task in competition.tasks.items():
        labels = items.train[task.column]
        if task.kind == "multi":
            seen = sorted({tag for value in labels for tag in value.split(task.label_delim) if tag})
        else:
            seen = sorted(set(labels))
        if task.classes is not None:
            classes = list(task.classes)
        elif name == competition.target_task and competition.submission.kind == "probs":
            classes = [c for c in items.sample_submission.columns if c != competition.id_column]
        else:
            classes = seen
        unknown = sorted(set(seen) - set(classes))
        if unknown:
            raise DataError(
                f"{competition.train_csv}: column {task.column} has label(s) {', '.join(unknown[:5])} that are "
                f"not among the competition's {len(classes)} classes."
            )
        vocab[name] = classes
    return vocab
