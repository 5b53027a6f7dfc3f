"""SIIM pneumothorax, in the layout of fastai's SIIM_SMALL sample: does a chest x-ray show a collapsed lung?

`labels.csv` lists `file,label`, the file being the DICOM's path (`train/Pneumothorax/000000.dcm`), so the
path is the id. SIIM_SMALL ships no test set and no sample submission; kagglekit's convention, which the
sample follows, is the same shape for both: DICOMs under `test/`, and a `sample_submission.csv` with `file,label`
listing them by path (label empty). Users of the real SIIM_SMALL must hold out some files (or bring their
own) into `test/` and write that CSV. The real files are 1024x1024, 8-bit JPEG baseline MONOCHROME2; the
sample writes most files that way, and the rest at 12 bits in other encodings so the full-depth path is used.
There is no official metric for this classification task; accuracy is the natural one. The slug is the
source competition's; its own Kaggle download is not in this layout (fastai's `URLs.SIIM_SMALL` is).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kagglekit import Competition, SampleSpec, Submission, Task, lazy_import, register
from kagglekit.samples.radiograph import Radiograph, dicom_image, dicom_style

# numpy (and Pillow) load when a sample is drawn: registering the plug-in stays instant for `list` and `check`.
np = lazy_import("numpy")

if TYPE_CHECKING:  # pydicom (like pandas) loads when a sample is drawn, not when the plug-in registers
    from pydicom.dataset import Dataset

LABELS = ("No Pneumothorax", "Pneumothorax")
POSITIVE_SHARE = 0.35  # the sample's (invented) prevalence
SIZE = 192


def _syntaxes() -> dict:
    """The sample's encodings and their shares (None: uncompressed); pydicom loads when a sample is drawn."""
    from pydicom.uid import JPEG2000Lossless, JPEGBaseline8Bit, RLELossless

    return {JPEGBaseline8Bit: 0.6, None: 0.2, RLELossless: 0.1, JPEG2000Lossless: 0.1}


def _box(x: float, y: float, rx: float, ry: float) -> tuple[float, float, float, float]:
    return (x - rx) * SIZE, (y - ry) * SIZE, (x + rx) * SIZE, (y + ry) * SIZE


def _px(*points: tuple[float, float]) -> list[tuple[float, float]]:
    return [(x * SIZE, y * SIZE) for x, y in points]


def _vessels(film: Radiograph, rng: np.random.Generator, lung: tuple, medial: float) -> None:
    """Lung markings: vessels branching from the hilum out to most of the way to the lung's edge."""
    x, y, rx, ry = lung
    for _ in range(rng.integers(16, 26)):
        angle = rng.uniform(-1.3, 1.3) + (0 if medial < 0 else np.pi)  # fan out laterally from the hilum
        length = 0.85 * rng.uniform(0.6, 1.0)
        start = (x + medial * rx * 0.7, y + rng.normal(0, 0.05))
        end = (start[0] + np.cos(angle) * rx * length * 1.6, start[1] + np.sin(angle) * ry * length)
        film.air.line(_px(start, end), fill=90, width=1)


def _paint(rng: np.random.Generator, row: dict) -> Dataset:
    """A frontal chest film; a pneumothorax is a dark rim without lung markings at the edge of one lung."""
    film = Radiograph((SIZE, SIZE))
    dx, dy = rng.normal(0, 0.02, 2)
    film.tissue.ellipse(_box(0.5 + dx, 0.56 + dy, 0.48, 0.5), fill=255)
    lungs = [
        (x + dx + rng.normal(0, 0.01), 0.47 + dy, rng.uniform(0.13, 0.16), rng.uniform(0.29, 0.34)) for x in (0.3, 0.7)
    ]
    collapsed = rng.integers(2) if row["label"] == "Pneumothorax" else None
    for side, lung in enumerate(lungs):
        medial = 1 if side == 0 else -1  # the patient's right lung is on the image's left
        aeration = int(rng.integers(185, 236))  # lungs differ in darkness with or without a pneumothorax
        film.air.ellipse(_box(*lung), fill=255 if side == collapsed else aeration)
        if side == collapsed:  # the lung shrinks towards the hilum, leaving pleural air without markings at its edge
            x, y, rx, ry = lung
            shrink = rng.uniform(0.12, 0.38)
            inflated = (
                x + medial * rx * shrink * 0.6,
                y + ry * shrink * 0.2,
                rx * (1 - shrink * 0.6),
                ry * (1 - shrink * 0.25),
            )
            film.tissue.ellipse(_box(*lung), fill=210)
            film.tissue.ellipse(_box(*inflated), fill=255)
            film.air.ellipse(_box(*inflated), fill=aeration, outline=142)  # the visceral pleural line
            lung = inflated
        _vessels(film, rng, lung, medial)
    film.air.ellipse(_box(0.57 + dx, 0.68 + dy, rng.uniform(0.11, 0.15), 0.12), fill=0)  # the heart
    for i in range(7):  # posterior ribs, then the spine and clavicles
        for side in (-1, 1):
            y = 0.2 + dy + i * 0.085
            film.bone.line(_px((0.5 + side * 0.04, y), (0.5 + side * 0.4, y + 0.06)), fill=70, width=3)
    for i in range(12):
        film.bone.line(_px((0.5 + dx, 0.05 + i * 0.08), (0.5 + dx, 0.1 + i * 0.08)), fill=90, width=12)
    for side in (-1, 1):
        film.bone.line(_px((0.5 + side * 0.05, 0.17 + dy), (0.5 + side * 0.35, 0.12 + dy)), fill=130, width=5)
    if rng.random() < 0.4:  # a skin fold: a line across a lung with markings on both sides, not a pneumothorax
        film.air.arc(_box(rng.uniform(0.2, 0.8), 0.5, 0.2, 0.3), rng.uniform(0, 180), 360, fill=150, width=1)
    return dicom_image(rng, film.grey(rng, blur=0.8), **dicom_style(rng, _syntaxes(), monochrome1=0.25))


def _sample(rng: np.random.Generator, n_train: int, n_test: int) -> SampleSpec:
    import pandas as pd  # here, not at registration: `kagglekit list` starts without pandas

    labels = np.where(rng.random(n_train + n_test) < POSITIVE_SHARE, LABELS[1], LABELS[0])
    files = [f"train/{label}/{n:06d}.dcm" for n, label in enumerate(labels[:n_train])]
    files += [f"test/{n:06d}.dcm" for n in range(n_train, n_train + n_test)]
    table = pd.DataFrame({"file": files, "label": labels})
    return SampleSpec(train=table[:n_train], answers=table[n_train:].reset_index(drop=True), paint=_paint)


@register
def siim() -> Competition:
    return Competition(
        name="siim",
        slug="siim-acr-pneumothorax-segmentation",
        title="SIIM-ACR Pneumothorax (fastai SIIM_SMALL layout)",
        train_csv="labels.csv",
        id_column="file",
        train_image="{file}",
        test_images=("{id}",),
        sample_submission="sample_submission.csv",
        tasks={"label": Task("label", classes=LABELS)},
        metric="accuracy",
        submission=Submission("label", column="label"),
        make_sample=_sample,
        images="dicom",
    )
