"""Small synthetic datasets in a competition's exact file layout, for trying and testing the pipeline.

A plug-in describes its sample as a `SampleSpec`: the rows of its training table, the test ids with their
hidden answers, and a painter that draws one image from its row. This module writes the files where the
competition's own templates say they go, so the sample exercises exactly the loading code real data does.
Images carry their class in their content (shapes and colours), never in names or order.
"""

from __future__ import annotations

import hashlib
import io
import logging
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from string import Formatter
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from PIL import Image, ImageDraw, ImageFilter
from rich.progress import track

from kagglekit.competition import Competition, DicomIndex
from kagglekit.files import atomic_write

if TYPE_CHECKING:
    from pydicom.dataset import Dataset
    from pydicom.uid import UID

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


# --- DICOM helpers shared by the radiograph plug-ins' painters --------------------------------------------


class Radiograph:
    """A radiograph drawn as attenuation layers: soft tissue, air inside the body (lungs, gas) and bone.

    Draw on `tissue`, `air` and `bone` (PIL ImageDraw, fill 0..255); `grey` blurs and combines them as an
    x-ray shows them, bone white and air black, with smooth exposure variation and noise, in float so that
    a 12-bit image really uses thousands of grey levels.
    """

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = size
        self._layers = [Image.new("L", size) for _ in range(3)]
        self.tissue, self.air, self.bone = (ImageDraw.Draw(layer) for layer in self._layers)

    def grey(self, rng: np.random.Generator, blur: float = 1.2, noise: float = 0.015) -> np.ndarray:
        """The image as floats in 0..1 (1 = white), shape (height, width)."""
        blurred = (layer.filter(ImageFilter.GaussianBlur(blur)) for layer in self._layers)
        tissue, air, bone = (np.asarray(layer, dtype=np.float32) / 255 for layer in blurred)
        coarse = Image.fromarray(rng.normal(0, 0.04, (3, 3)).astype(np.float32))
        exposure = np.asarray(coarse.resize(self.size, Image.Resampling.BICUBIC), dtype=np.float32)
        grey = 0.05 + 0.4 * tissue * (1 - 0.85 * air) + 0.45 * bone + exposure
        return np.clip(grey * rng.uniform(0.85, 1.1) + rng.normal(0, noise, grey.shape), 0, 1)


def dicom_image(
    rng: np.random.Generator, grey: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int = 12,
    slope: float = 1.0, intercept: float = 0.0, transfer_syntax: UID | None = None, **elements: object,
) -> Dataset:  # fmt: skip
    """A single-frame DX image that displays `grey` (floats, 0 black .. 1 white) when decoded correctly.

    The stored values are `grey` quantised to `bits_stored` bits (8 allocated up to 8 bits, else 16), inverted
    for MONOCHROME1, so a reader that ignores the photometric interpretation sees a negative. A positive
    RescaleSlope keeps the image; the reader must still map the rescaled range, not the stored one.
    JPEG baseline (8 bits) is encoded with Pillow, as pydicom has no encoder for it; other syntaxes go
    through `Dataset.compress`; None stores it uncompressed. `elements` sets header keywords; the instance
    UIDs it does not set are drawn from `rng`.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import (
        DigitalXRayImageStorageForPresentation,
        ExplicitVRLittleEndian,
        JPEGBaseline8Bit,
        generate_uid,
    )

    top = 2**bits_stored - 1
    stored = np.rint(np.clip(grey, 0, 1) * top).astype(np.uint8 if bits_stored <= 8 else np.uint16)
    if photometric == "MONOCHROME1":
        stored = top - stored
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    for uid in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        setattr(ds, uid, generate_uid(entropy_srcs=[str(rng.integers(2**62))]))
    ds.Modality = "DX"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = stored.itemsize * 8, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 0
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept, "US"
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if transfer_syntax == JPEGBaseline8Bit:
        if bits_stored != 8:
            raise ValueError("JPEG baseline stores 8 bits per pixel")
        buffer = io.BytesIO()
        Image.fromarray(stored).save(buffer, format="JPEG", quality=90)
        ds.PixelData = encapsulate([buffer.getvalue()])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = transfer_syntax
        ds.LossyImageCompression = "01"
    else:
        ds.PixelData = stored.tobytes()
        if transfer_syntax not in (None, ExplicitVRLittleEndian):
            logging.getLogger("openjpeg").setLevel(logging.WARNING)  # it logs every encoded tile at INFO
            ds.compress(transfer_syntax, generate_instance_uid=False)  # the UID is the file's id
    return ds


_RESCALES = ((1.0, 0.0), (0.5, -1024.0), (2.0, 0.0), (1.0, -512.0), (0.25, 100.0))  # (slope, intercept)


def dicom_style(rng: np.random.Generator, syntaxes: Mapping[UID | None, float], monochrome1: float = 0.4) -> dict:
    """A random but correct encoding for `dicom_image`: a transfer syntax drawn with the given weights (12 bits
    stored in 16, or 8 for JPEG baseline), MONOCHROME1 with probability `monochrome1`, and a rescale."""
    from pydicom.uid import JPEGBaseline8Bit

    weights = np.array(list(syntaxes.values()), dtype=float)
    syntax = list(syntaxes)[rng.choice(len(syntaxes), p=weights / weights.sum())]
    slope, intercept = _RESCALES[rng.integers(len(_RESCALES))]
    return {
        "transfer_syntax": syntax, "bits_stored": 8 if syntax == JPEGBaseline8Bit else 12,
        "photometric": "MONOCHROME1" if rng.random() < monochrome1 else "MONOCHROME2",
        "slope": slope, "intercept": intercept,
    }  # fmt: skip
