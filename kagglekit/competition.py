"""The declarative description of a competition that a plug-in hands to the pipeline.

A plug-in says *what* the competition looks like (files, tasks, metric, submission format); the pipeline
decides *how* to load, train, predict and write. Nothing here knows any competition. Every field is checked
when the record is built, so a broken plug-in fails when it registers, naming the field, not after an hour of
training.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from string import Formatter
from typing import TYPE_CHECKING, Any, Literal

from kagglekit.errors import PluginError, RecipeError

if TYPE_CHECKING:
    import numpy as np
    import pandas as pd

TaskKind = Literal["single", "multi"]
SubmissionKind = Literal["label", "probs", "tags"]
ImageKind = Literal["photo", "dicom"]
# Which target task kind each submission kind writes: one class name or a probability row per id for a
# single-label task, a set of tags per id for a multi-label one.
SUBMISSION_TASK_KIND = {"label": "single", "probs": "single", "tags": "multi"}


@dataclass(frozen=True)
class Task:
    """One prediction target: a column of the item table and how it is learnt.

    `single` is single-label classification (softmax, cross-entropy); `multi` is multi-label (sigmoid,
    binary cross-entropy) with labels separated by `label_delim` in the column.
    """

    column: str
    kind: TaskKind = "single"
    label_delim: str = " "
    classes: tuple[str, ...] | None = None  # None: learnt from the training data


@dataclass(frozen=True)
class Submission:
    """How predictions for the target task become the competition's CSV.

    label: `id,<column>` with the most probable class name.
    probs: `id` then one probability column per class, in the sample submission's order.
    tags:  `id,<column>` with the classes above their thresholds, space-separated.
    """

    kind: SubmissionKind
    column: str | None = None  # the prediction column for label/tags submissions
    clip: float = 1e-15  # probs: probabilities are clipped to [clip, 1 - clip] and renormalised


@dataclass(frozen=True)
class DicomIndex:
    """DICOM files found recursively under `folder` and keyed by their header's SOPInstanceUID, not by file name.

    Competitions nest DICOMs in study/series folders whose exact depth is not documented; the header's
    SOPInstanceUID is the id the CSVs use. `sample_path` says where a generated sample puts each file.
    """

    folder: str
    sample_path: str = "{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}-c.dcm"


@dataclass
class SampleSpec:
    """What a plug-in's sample generator returns; `kagglekit.samples` writes it in the real layout."""

    train: pd.DataFrame  # the training table, exactly the columns of the real train CSV
    answers: pd.DataFrame  # test ids and their truth: id column + the target task's column
    paint: Callable[[np.random.Generator, dict], Any]  # draws one row's image: a PIL Image or a pydicom Dataset
    image_format: str = "JPEG"
    test_template: pd.Series | None = None  # per test row, which of competition.test_images it goes to


@dataclass(frozen=True)
class Competition:
    """Everything the pipeline needs to know about one Kaggle competition."""

    name: str
    slug: str
    title: str
    train_csv: str
    id_column: str  # the id column shared by the training table and the submission
    train_image: str | DicomIndex  # path template relative to the data folder, formatted with the training row
    test_images: Sequence[str] | DicomIndex  # path templates tried in order, formatted with `id`
    sample_submission: str
    tasks: dict[str, Task]  # task name -> task; the first is the one the submission predicts
    metric: str  # a name in kagglekit.submission.METRICS
    submission: Submission
    make_sample: Callable[[np.random.Generator, int, int], SampleSpec]  # (rng, n_train, n_test) -> real layout
    target: str | None = None  # defaults to the first task
    images: ImageKind = "photo"  # dicom: decoded at full depth and cached as 16-bit PNG before training
    dicom_frames: Literal["first", "all"] = "first"  # multi-frame DICOMs: the first frame, or all stacked
    recipes_dir: Path | None = None  # folder of <recipe>.toml files; set by the registry

    def __post_init__(self) -> None:
        problems = _problems(self)
        if problems:
            raise PluginError(f"competition plug-in {self.name!r}: {'; '.join(problems)}.")

    @property
    def target_task(self) -> str:
        return self.target or next(iter(self.tasks))

    @property
    def columns(self) -> list[str]:
        """The training table's columns kagglekit reads: the id, then one per task."""
        return [self.id_column, *(task.column for task in self.tasks.values())]

    def recipe_path(self, name: str) -> Path:
        """A recipe by name from the plug-in's recipes folder, or a path to a TOML file."""
        candidate = Path(name)
        if candidate.suffix == ".toml":
            if not candidate.is_file():
                raise RecipeError(f"Recipe file {candidate} does not exist.")
            return candidate
        folder = self.recipes_dir
        available = sorted(p.stem for p in folder.glob("*.toml")) if folder and folder.is_dir() else []
        if name not in available:
            raise RecipeError(
                f"Competition {self.name!r} has no recipe {name!r}; available: {', '.join(available) or 'none'}. "
                "Pass a recipe name or a path to a .toml file."
            )
        return folder / f"{name}.toml"


def _fields(template: str) -> set[str]:
    return {name for _, name, _, _ in Formatter().parse(template) if name is not None}


def _problems(c: Competition) -> list[str]:
    """What is wrong with a competition record, field by field (empty when it is valid)."""
    from kagglekit.submission.metrics import METRICS

    if not c.tasks:
        return ["tasks: at least one task is required"]
    problems = [f"tasks[{n!r}].kind must be 'single' or 'multi', not {t.kind!r}"
                for n, t in c.tasks.items() if t.kind not in ("single", "multi")]  # fmt: skip
    problems += [f"tasks[{n!r}].classes must be unique and non-empty" for n, t in c.tasks.items()
                 if t.classes is not None and (not t.classes or len(set(t.classes)) != len(t.classes))]  # fmt: skip
    if c.target is not None and c.target not in c.tasks:
        problems.append(f"target {c.target!r} is not one of the tasks ({', '.join(c.tasks)})")
    target = c.tasks.get(c.target_task)
    spec = c.submission
    if spec.kind not in SUBMISSION_TASK_KIND:
        problems.append(f"submission.kind must be label, probs or tags, not {spec.kind!r}")
    elif target is not None and target.kind != SUBMISSION_TASK_KIND[spec.kind]:
        problems.append(f"submission.kind {spec.kind!r} needs a {SUBMISSION_TASK_KIND[spec.kind]}-label target task")
    if spec.kind in ("label", "tags") and not spec.column:
        problems.append(f"submission.column is required for a {spec.kind!r} submission")
    if not 0 < spec.clip < 0.5:
        problems.append(f"submission.clip must be between 0 and 0.5, not {spec.clip}")
    metric = METRICS.get(c.metric)
    if metric is None:
        problems.append(f"metric {c.metric!r} is unknown; known: {', '.join(METRICS)}")
    elif metric.submission != spec.kind:
        problems.append(f"metric {c.metric!r} scores {metric.submission!r} submissions, not {spec.kind!r} ones")
    if isinstance(c.train_image, str):
        unknown = _fields(c.train_image) - set(c.columns)
        if unknown:
            problems.append(f"train_image {c.train_image!r} names {', '.join(sorted(unknown))}, not among the "
                            f"training columns {', '.join(c.columns)}")  # fmt: skip
    if isinstance(c.test_images, str):
        problems.append("test_images must be a sequence of templates (or a DicomIndex), not one string")
    elif not isinstance(c.test_images, DicomIndex):
        problems += [f"test_images template {t!r} may name only {{id}}" for t in c.test_images if _fields(t) != {"id"}]
    if c.images not in ("photo", "dicom"):
        problems.append(f"images must be 'photo' or 'dicom', not {c.images!r}")
    if c.dicom_frames not in ("first", "all"):
        problems.append(f"dicom_frames must be 'first' or 'all', not {c.dicom_frames!r}")
    if not callable(c.make_sample):
        problems.append("make_sample must be a function (rng, n_train, n_test) -> SampleSpec")
    return problems
