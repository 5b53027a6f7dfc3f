"""UNIFESP X-ray Body Part Classifier: which of 22 body parts a DICOM radiograph shows (a few show two).

DICOMs sit in study/series folders whose depth is not documented, so they are found recursively and keyed
by the SOPInstanceUID in their header. The metric is only known to be "an F1 variant": `f1_samples` (F1 per
image, averaged) is our best guess; treat its absolute value with care when comparing with the leaderboard.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING

from kagglekit import Competition, SampleSpec, Submission, Task, lazy_import, register
from kagglekit.competition import DicomIndex
from kagglekit.samples.radiograph import Radiograph, dicom_image, dicom_style

# numpy (and Pillow) load when a sample is drawn: registering the plug-in stays instant for `list` and `check`.
np = lazy_import("numpy")

if TYPE_CHECKING:  # pydicom (like pandas) loads when a sample is drawn, not when the plug-in registers
    from pydicom.dataset import Dataset

BODY_PARTS = (
    "Abdomen", "Ankle", "CervicalSpine", "Chest", "Clavicles", "Elbow", "Feet", "Finger", "Forearm", "Hand", "Hip",
    "Knee", "LowerLeg", "LumbarSpine", "Others", "Pelvis", "Shoulder", "Sinus", "Skull", "Thigh", "ThoracicSpine",
    "Wrist",
)  # fmt: skip
CLASSES = tuple(str(i) for i in range(len(BODY_PARTS)))  # the CSVs use the indices
# The sample's class frequencies (invented: the real counts are not known): chest films dominate, as in most
# radiology archives. PAIRS are body parts that one film can show together, the sample's two-target rows.
COMMON = {"Chest": 4.0, "Abdomen": 2.0, "Hand": 1.5, "Knee": 1.5, "Skull": 1.5}
PAIRS = (("Chest", "Clavicles"), ("LumbarSpine", "Pelvis"), ("Hand", "Wrist"), ("Ankle", "Feet"), ("Knee", "LowerLeg"))
TWO_TARGETS = 0.08


Shape = tuple  # (kind, *unit coordinates and sizes), built by the five functions below


def tissue(x: float, y: float, rx: float, ry: float) -> Shape:
    return ("tissue", x, y, rx, ry)


def air(x: float, y: float, rx: float, ry: float) -> Shape:
    return ("air", x, y, rx, ry)


def bone(x0: float, y0: float, x1: float, y1: float, width: float) -> Shape:
    return ("bone", x0, y0, x1, y1, width)


def ring(x: float, y: float, rx: float, ry: float, width: float) -> Shape:
    return ("ring", x, y, rx, ry, width)


def spine(x0: float, y0: float, x1: float, y1: float, count: int, width: float) -> Shape:
    return ("spine", x0, y0, x1, y1, count, width)


# Each body part as a frontal film in unit coordinates (x right, y down): soft tissue and air ellipses
# (centre, radii), bones (ends, width), rings (ellipse outlines) and spines (ends, vertebra count, width).
ANATOMY = {
    "Abdomen": [tissue(.5, .5, .46, .5), spine(.5, .02, .5, .8, 5, .1), air(.33, .35, .07, .05), air(.66, .3, .08, .05),
                air(.3, .6, .06, .04), air(.68, .62, .07, .05), bone(.15, .85, .3, .98, .05),
                bone(.85, .85, .7, .98, .05)],
    "Ankle": [tissue(.5, .45, .22, .5), tissue(.5, .85, .4, .15), bone(.45, 0, .45, .68, .14),
              bone(.63, 0, .64, .72, .06), bone(.3, .82, .72, .84, .16)],
    "CervicalSpine": [tissue(.5, .55, .3, .5), spine(.5, .22, .52, .98, 7, .13), bone(.2, .18, .45, .3, .05),
                      ring(.35, 0, .35, .2, .04)],
    "Chest": [tissue(.5, .5, .48, .5), air(.3, .45, .16, .32), air(.7, .45, .16, .32), spine(.5, .02, .5, .98, 10, .07),
              bone(.14, .3, .44, .22, .025), bone(.14, .45, .44, .37, .025), bone(.14, .6, .44, .52, .025),
              bone(.56, .22, .86, .3, .025), bone(.56, .37, .86, .45, .025), bone(.56, .52, .86, .6, .025)],
    "Clavicles": [tissue(.5, .6, .5, .5), air(.3, .78, .16, .22), air(.7, .78, .16, .22), bone(.1, .28, .45, .42, .05),
                  bone(.9, .28, .55, .42, .05), spine(.5, .1, .5, 1, 6, .07)],
    "Elbow": [tissue(.5, .5, .22, .52), bone(.42, 0, .46, .48, .13), bone(.47, .55, .75, 1, .08),
              bone(.53, .53, .85, .93, .08)],
    "Feet": [tissue(.5, .5, .33, .48), bone(.47, .92, .5, .62, .15), bone(.45, .6, .3, .1, .04),
             bone(.49, .6, .41, .06, .04), bone(.52, .6, .52, .06, .04), bone(.55, .6, .62, .09, .04),
             bone(.58, .62, .72, .14, .04)],
    "Finger": [tissue(.5, .5, .16, .52), bone(.5, .06, .5, .3, .11), bone(.5, .37, .5, .62, .12),
               bone(.5, .69, .5, .97, .13)],
    "Forearm": [tissue(.5, .5, .28, .52), bone(.4, 0, .42, 1, .09), bone(.6, 0, .63, 1, .08)],
    "Hand": [tissue(.5, .6, .35, .42), bone(.32, .72, .2, .12, .05), bone(.42, .7, .38, .06, .05),
             bone(.52, .7, .54, .05, .05), bone(.6, .72, .68, .1, .05), bone(.68, .8, .86, .52, .05),
             bone(.4, .86, .6, .86, .14)],
    "Hip": [tissue(.5, .5, .48, .5), ring(.32, .3, .28, .25, .05), bone(.58, .48, .85, 1, .14),
            bone(.52, .42, .52, .42, .22)],
    "Knee": [tissue(.5, .5, .3, .52), bone(.5, 0, .5, .42, .18), bone(.5, .56, .5, 1, .17), bone(.72, .62, .72, 1, .05),
             bone(.5, .36, .5, .36, .12)],
    "LowerLeg": [tissue(.5, .5, .3, .52), bone(.42, 0, .43, 1, .12), bone(.66, 0, .67, 1, .05)],
    "LumbarSpine": [tissue(.5, .5, .45, .5), spine(.5, .02, .5, .98, 5, .2)],
    "Others": [],  # random bones and blobs, drawn by _paint
    "Pelvis": [tissue(.5, .5, .5, .45), ring(.3, .35, .2, .22, .05), ring(.7, .35, .2, .22, .05),
               bone(.35, .8, .65, .8, .05), bone(.2, .62, .1, 1, .13), bone(.8, .62, .9, 1, .13),
               spine(.5, 0, .5, .32, 2, .14)],
    "Shoulder": [tissue(.4, .5, .42, .52), air(.82, .62, .2, .35), bone(.55, .48, .45, 1, .14),
                 bone(.56, .44, .56, .44, .24), bone(.05, .2, .72, .3, .06), ring(.75, .55, .12, .3, .04)],
    "Sinus": [tissue(.5, .5, .45, .48), ring(.5, .5, .45, .48, .05), air(.35, .56, .1, .12), air(.65, .56, .1, .12),
              air(.5, .28, .15, .06), bone(.5, .4, .5, .75, .04)],
    "Skull": [tissue(.5, .5, .45, .48), ring(.5, .46, .44, .42, .07), ring(.5, .86, .3, .12, .05)],
    "Thigh": [tissue(.5, .5, .4, .52), bone(.5, 0, .53, 1, .2)],
    "ThoracicSpine": [tissue(.5, .5, .4, .5), air(.25, .5, .15, .4), air(.75, .5, .15, .4), spine(.5, 0, .5, 1, 8, .15),
                      bone(.22, .3, .42, .25, .03), bone(.22, .55, .42, .5, .03), bone(.58, .25, .78, .3, .03),
                      bone(.58, .5, .78, .55, .03)],
    "Wrist": [tissue(.5, .5, .3, .52), bone(.4, .62, .4, 1, .11), bone(.62, .62, .63, 1, .07),
              bone(.4, .48, .4, .48, .1), bone(.52, .46, .52, .46, .1), bone(.62, .5, .62, .5, .08),
              bone(.46, .36, .46, .36, .09), bone(.58, .36, .58, .36, .09), bone(.36, .28, .3, 0, .05),
              bone(.48, .28, .46, 0, .05), bone(.6, .28, .62, 0, .05), bone(.68, .3, .76, .02, .05)],
}  # fmt: skip


def _others(rng: np.random.Generator) -> list[Shape]:
    """Anything else (foreign bodies, implants, unusual views): a few bones and blobs anywhere."""
    shapes = [tissue(*rng.uniform(0.3, 0.7, 2), *rng.uniform(0.2, 0.5, 2))]
    for _ in range(rng.integers(2, 6)):
        x0, y0, x1, y1 = rng.uniform(0, 1, 4)
        if rng.random() < 0.6:
            shapes.append(bone(x0, y0, x1, y1, rng.uniform(0.03, 0.12)))
        else:
            shapes.append(ring(x0, y0, *rng.uniform(0.05, 0.2, 2), 0.04))
    return shapes


def _draw(
    film: Radiograph, shape: Shape, place: Callable[[float, float], tuple[float, float]], scale: float, density: float
) -> None:
    """One shape, its unit coordinates mapped to pixels by `place` and its sizes by `scale`."""
    kind, *v = shape
    if kind in ("tissue", "air", "ring"):
        (x, y), (rx, ry) = place(v[0], v[1]), (v[2] * scale * film.size[0], v[3] * scale * film.size[1])
        box = (x - rx, y - ry, x + rx, y + ry)
        if kind == "ring":
            film.bone.ellipse(box, outline=int(density), width=max(1, round(v[4] * scale * min(film.size))))
        else:
            (film.tissue if kind == "tissue" else film.air).ellipse(box, fill=255)
        return
    (x0, y0), (x1, y1) = place(v[0], v[1]), place(v[2], v[3])
    width = v[-1] * scale * min(film.size)
    if kind == "spine":  # vertebrae: blocks along the axis with disc spaces between them
        count = int(v[4])
        for i in range(count):
            a, b = (i + 0.15) / count, (i + 0.85) / count
            film.bone.line(
                [(x0 + a * (x1 - x0), y0 + a * (y1 - y0)), (x0 + b * (x1 - x0), y0 + b * (y1 - y0))],
                fill=int(density),
                width=max(1, round(width)),
            )
        return
    film.bone.line([(x0, y0), (x1, y1)], fill=int(density), width=max(1, round(width)))
    for x, y in ((x0, y0), (x1, y1)):  # the wider joint ends of a long bone
        r = 0.7 * width
        film.bone.ellipse((x - r, y - r, x + r, y + r), fill=int(density))


def _syntaxes() -> dict:
    """The sample's encodings and their shares (None: uncompressed); pydicom loads when a sample is drawn."""
    from pydicom.uid import JPEG2000Lossless, RLELossless

    return {None: 0.5, RLELossless: 0.25, JPEG2000Lossless: 0.25}


def _paint(rng: np.random.Generator, row: dict) -> Dataset:
    """One film of the row's body part(s), placed, turned and scaled at random, in a random DICOM encoding."""
    size = (int(rng.integers(128, 225)), int(rng.integers(160, 225)))
    film = Radiograph(size)
    angle, scale, mirror = rng.normal(0, 0.15), rng.uniform(0.85, 1.1), rng.random() < 0.5
    shift = rng.normal(0, 0.04, 2)

    def place(x: float, y: float) -> tuple[float, float]:
        x, y = (1 - x if mirror else x) - 0.5, y - 0.5
        x, y = scale * (x * np.cos(angle) - y * np.sin(angle)), scale * (x * np.sin(angle) + y * np.cos(angle))
        jitter = rng.normal(0, 0.012, 2)
        return (x + 0.5 + shift[0] + jitter[0]) * size[0], (y + 0.5 + shift[1] + jitter[1]) * size[1]

    for part in (BODY_PARTS[int(c)] for c in row["Target"].split()):
        for shape in _others(rng) if part == "Others" else ANATOMY[part]:
            _draw(film, shape, place, scale, rng.uniform(170, 235))
    uid = row["SOPInstanceUID"]
    from pydicom.uid import generate_uid

    study, series = (generate_uid(entropy_srcs=[uid, level]) for level in ("study", "series"))
    return dicom_image(
        rng,
        film.grey(rng),
        **dicom_style(rng, _syntaxes()),
        SOPInstanceUID=uid,
        StudyInstanceUID=study,
        SeriesInstanceUID=series,
    )


def _targets(rng: np.random.Generator, n: int) -> list[str]:
    weights = np.array([COMMON.get(part, 1.0) for part in BODY_PARTS])
    parts = rng.choice(len(BODY_PARTS), size=n, p=weights / weights.sum())
    targets = [str(p) for p in parts]
    for i in np.flatnonzero(rng.random(n) < TWO_TARGETS):
        pair = PAIRS[rng.integers(len(PAIRS))]
        targets[i] = " ".join(str(BODY_PARTS.index(p)) for p in pair)
    return targets


def _sample(rng: np.random.Generator, n_train: int, n_test: int) -> SampleSpec:
    import pandas as pd  # here, not at registration: `kagglekit list` starts without pandas or pydicom
    from pydicom.uid import generate_uid

    uids = [generate_uid(entropy_srcs=[str(rng.integers(2**62))]) for _ in range(n_train + n_test)]
    train = pd.DataFrame({"SOPInstanceUID": uids[:n_train], "Target": _targets(rng, n_train)})
    answers = pd.DataFrame({"SOPInstanceUID": uids[n_train:], "Target": _targets(rng, n_test)})
    return SampleSpec(train=train, answers=answers, paint=_paint)


@register
def xray() -> Competition:
    return Competition(
        name="xray",
        slug="unifesp-x-ray-body-part-classifier",
        title="UNIFESP X-ray Body Part Classifier Competition",
        train_csv="train.csv",
        id_column="SOPInstanceUID",
        train_image=DicomIndex("train"),
        test_images=DicomIndex("test"),
        sample_submission="sample_submission.csv",
        tasks={"Target": Task("Target", kind="multi", classes=CLASSES)},
        metric="f1_samples",
        submission=Submission("tags", column="Target"),
        make_sample=_sample,
        images="dicom",
    )
