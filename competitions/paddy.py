"""Paddy Doctor: Paddy Disease Classification — 10 rice-leaf diseases from 480x640 photos."""

from __future__ import annotations

from kagglekit import Competition, SampleSpec, Submission, Task, lazy_import, register
from kagglekit.samples.draw import jitter, spots, textured, tint

# numpy (and Pillow) load when a sample is drawn: registering the plug-in stays instant for `list` and `check`.
np = lazy_import("numpy")
Image = lazy_import("PIL.Image")

LABELS = {  # real training counts, used to keep the sample's imbalance realistic
    "normal": 1764, "blast": 1738, "hispa": 1594, "dead_heart": 1442, "tungro": 1088, "brown_spot": 965,
    "downy_mildew": 620, "bacterial_leaf_blight": 479, "bacterial_leaf_streak": 380, "bacterial_panicle_blight": 337,
}  # fmt: skip
VARIETIES = {
    "ADT45": 6992, "KarnatakaPonni": 988, "Ponni": 657, "AtchayaPonni": 461, "Zonal": 399,
    "AndraPonni": 377, "Onthanel": 351, "IR20": 114, "RR": 36, "Surya": 32,
}  # fmt: skip

# What each disease looks like in the sample: (colour, count, radius range, elongation). Pairs of classes
# share colours or shapes (blight vs streak, blast vs brown spot) so a model has to learn the differences.
LESIONS = {
    "blast": ((150, 140, 120), 14, (10, 22), 2.2),
    "brown_spot": ((110, 60, 25), 30, (5, 10), 1.0),
    "bacterial_leaf_blight": ((215, 200, 90), 6, (14, 26), 7.0),
    "bacterial_leaf_streak": ((190, 170, 80), 12, (4, 7), 9.0),
    "bacterial_panicle_blight": ((205, 175, 120), 5, (35, 60), 1.2),
    "dead_heart": ((120, 90, 50), 2, (70, 110), 1.5),
    "downy_mildew": ((225, 230, 215), 10, (16, 30), 1.3),
    "hispa": ((235, 235, 225), 40, (3, 5), 5.0),
}


def _paint(rng: np.random.Generator, row: dict) -> Image.Image:
    label, variety = row["label"], row.get("variety", "ADT45")
    size = (640, 480) if rng.random() < 0.02 else (480, 640)  # like the real data: a few are landscape
    variety_shift = (list(VARIETIES).index(variety) - 4) * 4
    leaf = (60 + variety_shift, 125 - int(row.get("age", 60)) // 6, 50)
    image = textured(rng, size, jitter(rng, leaf, 10))
    image = spots(image, rng, jitter(rng, (40, 95, 35)), 8, (3, 5), elongation=40, angle=np.pi / 2)  # veins
    severity = rng.uniform(0.35, 1.0)
    if label == "tungro":
        image = tint(image, (220, 170, 40), rng.uniform(0.2, 0.45))
    elif label in LESIONS:
        color, count, radius, elongation = LESIONS[label]
        angle = np.pi / 2 + rng.normal(0, 0.15) if elongation > 3 else None
        image = spots(image, rng, color, max(1, int(count * severity)), radius, elongation, angle)
    return image


def _sample(rng: np.random.Generator, n_train: int, n_test: int) -> SampleSpec:
    import pandas as pd  # here, not at registration: `kagglekit list` starts without pandas

    weights = np.array(list(LABELS.values()), dtype=float)
    counts = np.maximum(4, np.round(weights / weights.sum() * n_train)).astype(int)
    labels = np.repeat(list(LABELS), counts)
    rng.shuffle(labels)
    varieties = rng.choice(
        list(VARIETIES), size=len(labels), p=np.array(list(VARIETIES.values())) / sum(VARIETIES.values())
    )
    ids = rng.choice(np.arange(100001, 111000), size=len(labels), replace=False)
    train = pd.DataFrame({
        "image_id": [f"{i}.jpg" for i in ids], "label": labels, "variety": varieties,
        "age": rng.integers(45, 83, size=len(labels)),
    })  # fmt: skip
    test_labels = rng.choice(list(LABELS), size=n_test, p=weights / weights.sum())
    answers = pd.DataFrame({"image_id": [f"{200001 + i}.jpg" for i in range(n_test)], "label": test_labels})
    return SampleSpec(train=train, answers=answers, paint=_paint)


@register
def paddy() -> Competition:
    return Competition(
        name="paddy",
        slug="paddy-disease-classification",
        title="Paddy Doctor: Paddy Disease Classification",
        train_csv="train.csv",
        id_column="image_id",
        train_image="train_images/{label}/{image_id}",
        test_images=("test_images/{id}",),
        sample_submission="sample_submission.csv",
        tasks={"label": Task("label", classes=tuple(sorted(LABELS))), "variety": Task("variety")},
        metric="accuracy",
        submission=Submission("label", column="label"),
        make_sample=_sample,
    )
