"""Planet: Understanding the Amazon from Space — 17 weather and land tags per 256x256 satellite chip; F2."""

from __future__ import annotations

from kagglekit import Competition, SampleSpec, Submission, Task, lazy_import, register
from kagglekit.samples.draw import jitter, spots, textured, tint

# numpy (and Pillow) load when a sample is drawn: registering the plug-in stays instant for `list` and `check`.
np = lazy_import("numpy")
Image = lazy_import("PIL.Image")
ImageDraw = lazy_import("PIL.ImageDraw")
ImageFilter = lazy_import("PIL.ImageFilter")

TAGS = {  # approximate real counts in train_v2.csv (40,479 images), used to keep the sample's frequencies real
    "primary": 37513, "clear": 28431, "agriculture": 12315, "road": 8071, "water": 7411, "partly_cloudy": 7261,
    "cultivation": 4547, "habitation": 3660, "haze": 2697, "cloudy": 2089, "bare_ground": 862,
    "selective_logging": 340, "artisinal_mine": 339, "blooming": 332, "slash_burn": 209, "blow_down": 101,
    "conventional_mine": 100,
}  # fmt: skip
WEATHER = ("clear", "partly_cloudy", "haze", "cloudy")  # exactly one per image; cloudy hides the land
N_IMAGES = 40479
RARE_FLOOR = 0.015  # rare tags are drawn at least this often, so a 400-image sample has a handful of each
# Kaggle's download has test-jpg/ (test_N) and test-jpg-additional/ (file_N); its notebook input and some public
# copies name the first one test-jpg-v2/. Tried in this order; the sample writes the first two.
TEST_FOLDERS = ("test-jpg/{id}.jpg", "test-jpg-additional/{id}.jpg", "test-jpg-v2/{id}.jpg")
TEST_SHARE = 40669 / 61191  # real split of the test images between the two folders (test_N, then file_N)
SIZE = (256, 256)


def _paths(
    image: Image.Image, rng: np.random.Generator, color: tuple, count: int, width: int, wiggle: float
) -> Image.Image:
    """Rivers, roads and logging tracks: random walks both ways from a central point, so they cross the chip,
    turning by `wiggle` radians (standard deviation) per 8 px step."""
    draw = ImageDraw.Draw(image)
    for _ in range(count):
        start, heading = rng.uniform(0.25, 0.75, 2) * SIZE, rng.uniform(0, 2 * np.pi)
        halves = []
        for angle in (heading, heading + np.pi):
            x, y = start
            points = []
            for turn in rng.normal(0, wiggle, 24):
                angle += turn
                x, y = x + 8 * np.cos(angle), y + 8 * np.sin(angle)
                points.append((x, y))
            halves.append(points)
        line = [*halves[1][::-1], tuple(start), *halves[0]]
        draw.line(line, fill=jitter(rng, color, 12), width=int(width), joint="curve")
    return image


def _blocks(
    image: Image.Image, rng: np.random.Generator, color: tuple, count: int, size: tuple, around: float = 0
) -> Image.Image:
    """Fields, buildings and mine pits: rectangles sharing one orientation, clustered when `around` > 0."""
    draw = ImageDraw.Draw(image)
    angle, centre = rng.uniform(0, np.pi / 2), rng.uniform(0.2, 0.8, 2) * SIZE
    rotation = np.array([[np.cos(angle), -np.sin(angle)], [np.sin(angle), np.cos(angle)]])
    for _ in range(count):
        middle = centre + rng.normal(0, around, 2) if around else rng.uniform(0, SIZE[0], 2)
        half = rng.uniform(*size, 2) / 2
        corners = middle + (np.array([[-1, -1], [1, -1], [1, 1], [-1, 1]]) * half) @ rotation.T
        draw.polygon([tuple(c) for c in corners], fill=jitter(rng, color, 15))
    return image


def _clouds(image: Image.Image, rng: np.random.Generator, count: int, opacity: float) -> Image.Image:
    """Soft white blobs of cloud: a few leave the ground visible between them (partly cloudy), many hide it."""
    mask = Image.new("L", SIZE)
    draw = ImageDraw.Draw(mask)
    for x, y, r in zip(*rng.uniform(0, SIZE[0], (2, count)), rng.uniform(25, 70, count), strict=True):
        draw.ellipse((x - r, y - r * 0.7, x + r, y + r * 0.7), fill=int(255 * opacity))
    return Image.composite(Image.new("RGB", SIZE, (242, 242, 245)), image, mask.filter(ImageFilter.GaussianBlur(12)))


# How each land tag looks from above, painted in this order (spots' radii are in units of a 480 px image).
LAND = {
    "agriculture": lambda im, rng: _blocks(im, rng, (150, 165, 95), rng.integers(2, 6), (40, 110)),
    "cultivation": lambda im, rng: spots(im, rng, (120, 125, 75), rng.integers(4, 10), (12, 25)),
    "bare_ground": lambda im, rng: spots(im, rng, (165, 125, 90), rng.integers(1, 4), (25, 50)),
    "blow_down": lambda im, rng: spots(im, rng, (105, 150, 80), 1, (35, 55), elongation=2.5),
    "slash_burn": lambda im, rng: spots(im, rng, (50, 45, 40), rng.integers(1, 4), (15, 30)),
    "selective_logging": lambda im, rng: _paths(im, rng, (130, 140, 100), rng.integers(2, 4), 2, 0.5),
    "blooming": lambda im, rng: spots(im, rng, (210, 205, 150), rng.integers(20, 50), (3, 6)),
    "water": lambda im, rng: _paths(im, rng, (40, 55, 72), 1, rng.integers(8, 20), 0.25),
    "road": lambda im, rng: _paths(im, rng, (190, 170, 135), rng.integers(1, 3), 5, 0.05),
    "habitation": lambda im, rng: _blocks(im, rng, (200, 195, 190), rng.integers(15, 40), (3, 8), around=22),
    "conventional_mine": lambda im, rng: _blocks(im, rng, (195, 190, 180), 2, (45, 70), around=10),
    "artisinal_mine": lambda im, rng: spots(im, rng, (200, 145, 85), rng.integers(4, 9), (8, 14)),
}


def _paint(rng: np.random.Generator, row: dict) -> Image.Image:
    tags = set(row["tags"].split())
    ground = (48, 78, 42) if "primary" in tags else (130, 125, 85)  # rainforest canopy, else open land
    image = textured(rng, SIZE, jitter(rng, ground, 8), noise=12)
    for tag, draw in LAND.items():
        if tag in tags:
            image = draw(image, rng)
    if "haze" in tags:
        image = tint(image, (190, 190, 185), rng.uniform(0.35, 0.55)).filter(ImageFilter.GaussianBlur(1.2))
    elif "partly_cloudy" in tags:
        image = _clouds(image, rng, int(rng.integers(2, 6)), rng.uniform(0.7, 1.0))
    elif "cloudy" in tags:
        image = _clouds(tint(image, (230, 230, 235), rng.uniform(0.6, 0.85)), rng, 12, 1.0)
    return Image.fromarray(np.uint8(np.clip(np.asarray(image, dtype=np.float32) * rng.uniform(0.85, 1.15), 0, 255)))


def _tags(rng: np.random.Generator) -> str:
    """One image's tags: one weather tag; land tags at their real rates (cloudy images show no land)."""
    weights = np.array([TAGS[w] for w in WEATHER], dtype=float)
    weather = rng.choice(WEATHER, p=weights / weights.sum())
    if weather == "cloudy":
        return weather
    visible = N_IMAGES - TAGS["cloudy"]
    land = [t for t in TAGS if t not in WEATHER and rng.random() < max(RARE_FLOOR, TAGS[t] / visible)]
    if "habitation" in land and "road" not in land and rng.random() < 0.7:  # towns have roads
        land.append("road")
    return " ".join(sorted([weather, *(land or ["primary"])]))


def _sample(rng: np.random.Generator, n_train: int, n_test: int) -> SampleSpec:
    import pandas as pd  # here, not at registration: `kagglekit list` starts without pandas

    train = pd.DataFrame({"image_name": [f"train_{i}" for i in range(n_train)]})
    train["tags"] = [_tags(rng) for _ in range(n_train)]
    n_first = round(n_test * TEST_SHARE)
    names = [f"test_{i}" for i in range(n_first)] + [f"file_{i}" for i in range(n_test - n_first)]
    answers = pd.DataFrame({"image_name": names, "tags": [_tags(rng) for _ in range(n_test)]})
    folder = pd.Series([0] * n_first + [1] * (n_test - n_first), index=answers.index)
    return SampleSpec(train=train, answers=answers, paint=_paint, test_template=folder)


@register
def planet() -> Competition:
    return Competition(
        name="planet",
        slug="planet-understanding-the-amazon-from-space",
        title="Planet: Understanding the Amazon from Space",
        train_csv="train_v2.csv",
        id_column="image_name",
        train_image="train-jpg/{image_name}.jpg",
        test_images=TEST_FOLDERS,
        sample_submission="sample_submission_v2.csv",
        tasks={"tags": Task("tags", kind="multi", classes=tuple(sorted(TAGS)))},
        metric="f2_samples",
        submission=Submission("tags", column="tags"),
        make_sample=_sample,
    )
