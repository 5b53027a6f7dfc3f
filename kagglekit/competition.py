"""The declarative description of a competition that a plug-in hands to the pipeline.

A plug-in says *what* the competition looks like (files, tasks, metric, submission format); the pipeline
in this package decides *how* to load, train, predict and write. Nothing here knows any competition.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from kagglekit.samples import SampleSpec

TaskKind = Literal["single", "multi"]
SubmissionKind = Literal["label", "probs", "tags"]
ImageKind = Literal["photo", "dicom"]


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
    """DICOM files found recursively under `folder` and keyed by a header tag, not by their file names.

    Competitions nest DICOMs in study/series folders whose exact depth is not documented; the header's
    SOPInstanceUID is the id the CSVs use. `sample_path` says where a generated sample puts each file.
    """

    folder: str
    key: str = "SOPInstanceUID"
    sample_path: str = "{StudyInstanceUID}/{SeriesInstanceUID}/{SOPInstanceUID}-c.dcm"


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
    metric: str  # a name in kagglekit.metrics.METRICS
    submission: Submission
    make_sample: Callable[..., SampleSpec]  # (rng, n_train, n_test) -> a small dataset in the real layout
    target: str | None = None  # defaults to the first task
    images: ImageKind = "photo"  # dicom: decoded at full depth and cached as 16-bit PNG before training
    dicom_frames: Literal["first", "all"] = "first"  # multi-frame DICOMs: the first frame, or all stacked
    recipes_dir: Path | None = None  # folder of <recipe>.toml files; set by the registry

    @property
    def target_task(self) -> str:
        return self.target or next(iter(self.tasks))

    def recipe_path(self, name: str) -> Path:
        """A recipe by name from the plug-in's recipes folder, or a path to a TOML file."""
        candidate = Path(name)
        if candidate.suffix == ".toml":
            if not candidate.is_file():
                raise FileNotFoundError(f"Recipe file {candidate} does not exist.")
            return candidate
        folder = self.recipes_dir
        available = sorted(p.stem for p in folder.glob("*.toml")) if folder and folder.is_dir() else []
        if name not in available:
            raise KeyError(
                f"Competition {self.name!r} has no recipe {name!r}; available: {', '.join(available) or 'none'}. "
                "Pass a recipe name or a path to a .toml file."
            )
        return folder / f"{name}.toml"
