"""Dog Breed Identification — 120 breeds from photos of every size; scored by multi-class log loss."""

from __future__ import annotations

from pathlib import Path

from kagglekit import Competition, SampleSpec, Submission, Task, lazy_import, register
from kagglekit.samples.draw import jitter, spots, textured

# numpy (and Pillow) load when a sample is drawn: registering the plug-in stays instant for `list` and `check`.
np = lazy_import("numpy")
Image = lazy_import("PIL.Image")
ImageDraw = lazy_import("PIL.ImageDraw")
ImageFilter = lazy_import("PIL.ImageFilter")

# The real labels.csv, when this checkout sits beside the shared data: the sample then uses real (id, breed) pairs.
REAL_LABELS = Path(__file__).resolve().parents[2] / "shared" / "realdata" / "dogs" / "labels.csv"

# The sample's breeds (real names, hyphens included, with their real training counts) and how each is drawn:
# coat, marking colour, marking kind, ears, body length as a share of the image width, fur blur. Pairs share
# coats (samoyed/maltese, bluetick/husky, german_shepherd/beagle) so the model must use shape and markings too.
BREEDS = {
    "samoyed": (109, (236, 234, 228), None, "none", "erect", 0.62, 2.0),
    "maltese_dog": (117, (240, 236, 226), None, "none", "long", 0.40, 2.5),
    "pug": (94, (205, 170, 120), (45, 38, 32), "mask", "drop", 0.38, 0.6),
    "beagle": (105, (175, 110, 55), (35, 30, 28), "saddle", "drop", 0.48, 0.6),
    "bluetick": (85, (175, 182, 195), (30, 30, 40), "ticked", "long", 0.58, 0.6),
    "german_shepherd": (69, (190, 135, 65), (35, 30, 28), "saddle", "erect", 0.64, 0.8),
    "siberian_husky": (95, (105, 108, 116), (238, 238, 235), "underside", "erect", 0.58, 1.2),
    "black-and-tan_coonhound": (77, (32, 27, 24), (165, 95, 45), "points", "long", 0.60, 0.6),
    "golden_retriever": (67, (215, 160, 80), None, "none", "drop", 0.60, 1.4),
    "shih-tzu": (112, (232, 220, 198), (150, 105, 60), "patches", "long", 0.38, 2.5),
}
BACKGROUNDS = [(90, 130, 60), (150, 120, 90), (120, 120, 125), (220, 220, 225), (70, 90, 120), (180, 160, 130)]
DARK = (20, 18, 16)  # eyes and nose


def _dog(rng: np.random.Generator, size: tuple[int, int], breed: str) -> Image.Image:
    """A side view of a dog on a transparent layer: body, legs, tail, head, snout, ears, eye, nose, markings."""
    _, coat, mark, kind, ears, length, fur = BREEDS[breed]
    coat, mark = jitter(rng, coat, 12), jitter(rng, mark or coat, 12)
    layer = Image.new("RGBA", size)
    draw = ImageDraw.Draw(layer)
    body, face = length * size[0] * rng.uniform(0.8, 1.15), rng.choice([-1, 1])  # body length in px, facing
    x0, y0 = rng.uniform(0.3, 0.7) * size[0], rng.uniform(0.4, 0.65) * size[1]

    def at(dx: float, dy: float) -> tuple[float, float]:  # body-relative offsets, mirrored with the facing
        return x0 + face * dx * body, y0 + dy * body

    def blob(dx: float, dy: float, rx: float, ry: float, color: tuple[int, ...]) -> None:
        x, y = at(dx, dy)
        draw.ellipse((x - rx * body, y - ry * body, x + rx * body, y + ry * body), fill=(*color, 255))

    legs = mark if kind in ("points", "underside") else coat
    for dx in (-0.38, -0.25, 0.25, 0.38):
        draw.polygon([at(dx - 0.05, 0), at(dx + 0.05, 0), at(dx + 0.05, 0.5), at(dx - 0.05, 0.5)], fill=(*legs, 255))
    draw.line((*at(-0.5, -0.05), *at(-0.65, -0.4)), fill=(*coat, 255), width=int(body * 0.07))  # tail
    blob(0, 0, 0.52, 0.24, coat)
    if kind == "underside":
        blob(0, 0.1, 0.45, 0.12, mark)
    elif kind == "saddle":
        blob(-0.05, -0.1, 0.4, 0.13, mark)
    elif kind in ("ticked", "patches"):
        n, r = (40, 0.025) if kind == "ticked" else (3, 0.1)
        for dx, dy in zip(rng.uniform(-0.42, 0.42, n), rng.uniform(-0.15, 0.15, n), strict=True):
            blob(dx, dy, r, r * 0.8, mark)
    blob(0.55, -0.35, 0.2, 0.19, coat)  # head
    blob(0.75, -0.3, 0.11, 0.08, mark if kind in ("mask", "points", "underside") else coat)  # snout
    ear = mark if kind == "mask" else coat
    if ears == "erect":
        draw.polygon([at(0.37, -0.45), at(0.53, -0.47), at(0.45, -0.73)], fill=(*ear, 255))
    else:
        blob(0.47, -0.3, 0.07, 0.16 if ears == "drop" else 0.3, ear)
    blob(0.63, -0.38, 0.025, 0.025, DARK)  # eye
    blob(0.85, -0.3, 0.03, 0.025, DARK)  # nose
    return layer.filter(ImageFilter.GaussianBlur(fur * size[0] / 300)) if fur else layer


def _paint(rng: np.random.Generator, row: dict) -> Image.Image:
    width = int(rng.integers(220, 500))
    size = (width, int(np.clip(width * rng.uniform(0.65, 1.35), 180, 500)))  # real photos vary in size and shape
    image = textured(rng, size, jitter(rng, BACKGROUNDS[rng.integers(len(BACKGROUNDS))], 25), noise=22)
    image = spots(image, rng, jitter(rng, (128, 128, 128), 70), int(rng.integers(0, 5)), (20, 60))  # clutter
    image = Image.alpha_composite(image.convert("RGBA"), _dog(rng, size, row["breed"])).convert("RGB")
    lighting = rng.uniform(0.75, 1.2)
    return Image.fromarray(np.uint8(np.clip(np.asarray(image, dtype=np.float32) * lighting, 0, 255)))


def _real_ids(rng: np.random.Generator) -> dict[str, list[str]]:
    """Shuffled real ids per breed from the real labels.csv, or nothing when it is not at hand."""
    if not REAL_LABELS.is_file():
        return {}
    import pandas as pd  # here, not at registration: `kagglekit list` starts without pandas

    real = pd.read_csv(REAL_LABELS, dtype=str)
    return {breed: list(rng.permutation(group["id"].to_numpy())) for breed, group in real.groupby("breed")}


def _sample(rng: np.random.Generator, n_train: int, n_test: int) -> SampleSpec:
    import pandas as pd  # here, not at registration: `kagglekit list` starts without pandas

    weights = np.array([spec[0] for spec in BREEDS.values()], dtype=float)
    counts = np.maximum(3, np.round(weights / weights.sum() * n_train)).astype(int)
    breeds = np.repeat(list(BREEDS), counts)
    rng.shuffle(breeds)
    pools = _real_ids(rng)
    ids = [pools[b].pop() if pools.get(b) else rng.bytes(16).hex() for b in breeds]  # 32 hex chars, like md5
    train = pd.DataFrame({"id": ids, "breed": breeds})
    answers = pd.DataFrame({
        "id": [rng.bytes(16).hex() for _ in range(n_test)],
        "breed": rng.choice(list(BREEDS), size=n_test, p=weights / weights.sum()),
    })  # fmt: skip
    return SampleSpec(train=train, answers=answers, paint=_paint)


@register
def dogs() -> Competition:
    return Competition(
        name="dogs",
        slug="dog-breed-identification",
        title="Dog Breed Identification",
        train_csv="labels.csv",
        id_column="id",
        train_image="train/{id}.jpg",
        test_images=("test/{id}.jpg",),
        sample_submission="sample_submission.csv",
        tasks={"breed": Task("breed")},  # classes: the sample submission's columns (120 real, fewer in the sample)
        metric="log_loss",
        # A confident wrong answer costs at most -ln(1e-4) = 9.2 nats instead of 34.5; a confident right one
        # loses at most ln(1 + 119e-4) = 0.012 to the renormalisation.
        submission=Submission("probs", clip=1e-4),
        make_sample=_sample,
    )
