"""Small synthetic datasets in a competition's exact file layout, for trying and testing the pipeline.

A plug-in describes its sample as a `SampleSpec`: the rows of its training table, the test ids with their
hidden answers, and a painter that draws one image from its row. This module writes the files where the
competition's own templates say they go, so the sample exercises exactly the loading code real data does.
Images carry their class in their content (shapes and colours), never in names or order.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from string import Formatter

import numpy as np
import pandas as pd
from PIL import Image

from kagglekit._io import atomic_write, write_csv
from kagglekit._output import track
from kagglekit.competition import Competition, DicomIndex, SampleSpec
from kagglekit.defaults import cache_root

SAMPLE_VERSION = 2  # bump when a generator changes, so cached samples are rebuilt


@dataclass
class SampleData:
    data_dir: Path  # the competition folder, as a Kaggle download would extract
    answers: Path  # hidden answers for the test images, outside the competition folder


def _row_rng(seed: int, key: str) -> np.random.Generator:
    """One generator per image, so an image does not depend on which other images were drawn."""
    digest = hashlib.sha256(f"{seed}:{key}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def write_sample(
    competition: Competition, dest: Path, seed: int = 0, n_train: int = 400, n_test: int = 150
) -> SampleData:
    """Write `dest/<slug>/` in the competition's real layout and `dest/answers.csv` beside it."""
    spec = competition.make_sample(np.random.default_rng(seed), n_train, n_test)
    data_dir = Path(dest) / competition.slug
    id_column = competition.id_column
    test_spec = competition.test_images
    jobs = [(competition.train_image, row) for row in spec.train.to_dict(orient="records")]
    templates = spec.test_template if spec.test_template is not None else pd.Series(0, index=spec.answers.index)
    jobs += [
        (test_spec if isinstance(test_spec, DicomIndex) else test_spec[t].replace("{id}", f"{{{id_column}}}"), row)
        for t, row in zip(templates, spec.answers.to_dict(orient="records"), strict=True)
    ]
    for n, (template, row) in enumerate(track(jobs, description=f"Drawing the {competition.name} sample")):
        image = spec.paint(_row_rng(seed, f"{n}:{row[id_column]}"), row)
        path = data_dir / _relative_path(template, row, image)
        path.parent.mkdir(parents=True, exist_ok=True)
        atomic_write(path, partial(_save, image, spec.image_format))
    write_csv(data_dir / competition.train_csv, spec.train)
    write_csv(data_dir / competition.sample_submission, empty_submission(competition, spec))
    answers = write_csv(Path(dest) / "answers.csv", spec.answers)
    return SampleData(data_dir, answers)


def _relative_path(template: str | DicomIndex, row: dict, image) -> str:
    """Where an image goes: a template filled from its row, or (DICOM indexes) from its own header."""
    if isinstance(template, DicomIndex):
        fields = {name for _, name, _, _ in Formatter().parse(template.sample_path) if name}
        return f"{template.folder}/" + template.sample_path.format(**{f: str(image.get(f, "")) for f in fields})
    return template.format(**row)


def _save(image, image_format: str, tmp: Path) -> None:
    if isinstance(image, Image.Image):
        image.save(tmp, format=image_format, quality=90)
    else:  # a pydicom Dataset
        image.save_as(tmp, enforce_file_format=True)


def empty_submission(competition: Competition, spec: SampleSpec) -> pd.DataFrame:
    """The sample submission Kaggle ships: every test id, prediction columns empty (or uniform for probs)."""
    ids = spec.answers[competition.id_column]
    if competition.submission.kind == "probs":
        classes = sorted(set(spec.train[competition.tasks[competition.target_task].column]))
        return pd.DataFrame({competition.id_column: ids, **dict.fromkeys(classes, 1 / len(classes))})
    return pd.DataFrame({competition.id_column: ids, competition.submission.column: ""})


def ensure_sample(competition: Competition, seed: int = 0, root: Path | None = None, **sizes: int) -> SampleData:
    """The cached sample for `competition`, generated on first use."""
    tag = "-".join(f"{k}{v}" for k, v in sorted(sizes.items()))
    folder = (
        root or cache_root() / "samples"
    ) / f"{competition.name}-v{SAMPLE_VERSION}-seed{seed}{'-' + tag if tag else ''}"
    done = folder / ".complete"
    if not done.is_file():
        sample = write_sample(competition, folder, seed, **sizes)
        done.write_text("ok\n")
        return sample
    return SampleData(folder / competition.slug, folder / "answers.csv")
