"""Small synthetic datasets in a competition's exact file layout, for trying and testing the pipeline.

A plug-in describes its sample as a `SampleSpec`: the rows of its training table, the test ids with their
hidden answers, and a painter that draws one image from its row. This module writes the files where the
competition's own templates say they go, so the sample exercises exactly the loading code real data does.
Images carry their class in their content (shapes and colours), never in names or order.
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from string import Formatter
from typing import Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter
from rich.progress import track

from kagglekit.competition import Competition, DicomIndex
from kagglekit.files import atomic_write

SAMPLE_VERSION = 2  # bump when a generator changes, so cached samples are rebuilt


@dataclass
class SampleSpec:
    train: pd.DataFrame  # the training table, exactly the columns of the real train CSV
    answers: pd.DataFrame  # test ids and their truth: id column + the target task's column
    paint: Callable[[np.random.Generator, dict], Any]  # draws one row's image: a PIL Image or a pydicom Dataset
    image_format: str = "JPEG"
    test_template: pd.Series | None = None  # per test row, which of competition.test_images it goes to


@dataclass
class SampleData:
    data_dir: Path  # the competition folder, as a Kaggle download would extract
    answers: Path  # hidden answers for the test images, outside the competition folder


def cache_root() -> Path:
    """Where generated samples live: $KAGGLEKIT_CACHE, else $XDG_CACHE_HOME/kagglekit, else ~/.cache."""
    if "KAGGLEKIT_CACHE" in os.environ:
        return Path(os.environ["KAGGLEKIT_CACHE"])
    return Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache")) / "kagglekit"


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
    _write_csv(spec.train, data_dir / competition.train_csv)
    _write_csv(empty_submission(competition, spec), data_dir / competition.sample_submission)
    answers = _write_csv(spec.answers, Path(dest) / "answers.csv")
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


def _write_csv(frame: pd.DataFrame, path: Path) -> Path:
    return atomic_write(path, lambda tmp: frame.to_csv(tmp, index=False))


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


# --- drawing helpers shared by the plug-ins' painters -------------------------------------------------


def textured(
    rng: np.random.Generator, size: tuple[int, int], color: tuple[int, int, int], noise: float = 18.0
) -> Image.Image:
    """A canvas of `color` with smooth low-frequency variation and fine grain, like a photo's surface."""
    width, height = size
    coarse = rng.normal(0, noise, (max(2, height // 80), max(2, width // 80), 3))
    low = (
        np.asarray(
            Image.fromarray(np.uint8(np.clip(coarse + 128, 0, 255))).resize(size, Image.BICUBIC),
            dtype=np.float32,
        )
        - 128
    )
    grain = rng.normal(0, noise / 3, (height, width, 3))
    pixels = np.clip(np.asarray(color, dtype=np.float32) + low + grain, 0, 255)
    return Image.fromarray(pixels.astype(np.uint8))


def jitter(rng: np.random.Generator, color: tuple[int, int, int], amount: float = 20) -> tuple[int, int, int]:
    return tuple(int(np.clip(c + rng.normal(0, amount), 0, 255)) for c in color)


def spots(
    image: Image.Image, rng: np.random.Generator, color: tuple[int, int, int], count: int,
    radius: tuple[float, float], elongation: float = 1.0, angle: float | None = None, outline: tuple | None = None,
) -> Image.Image:  # fmt: skip
    """Scatter `count` ellipses (streaks when `elongation` > 1) of `color` over the image."""
    layer = Image.new("RGBA", image.size)
    draw = ImageDraw.Draw(layer)
    width, height = image.size
    for _ in range(count):
        r = rng.uniform(*radius) * width / 480
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        theta = rng.uniform(0, np.pi) if angle is None else angle + rng.normal(0, 0.1)
        points = [
            (x + np.cos(theta) * r * elongation * np.cos(t) - np.sin(theta) * r * np.sin(t),
             y + np.sin(theta) * r * elongation * np.cos(t) + np.cos(theta) * r * np.sin(t))
            for t in np.linspace(0, 2 * np.pi, 24)
        ]  # fmt: skip
        draw.polygon(points, fill=(*jitter(rng, color, 15), 230), outline=outline)
    layer = layer.filter(ImageFilter.GaussianBlur(1.5))
    return Image.alpha_composite(image.convert("RGBA"), layer).convert("RGB")


def tint(image: Image.Image, color: tuple[int, int, int], strength: float) -> Image.Image:
    """Blend the whole image towards `color` (a haze, a yellowing leaf)."""
    return Image.blend(image, Image.new("RGB", image.size, color), strength)
