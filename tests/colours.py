"""A test plug-in the tiniest model learns in two epochs: each class is a colour, drawn as a blob on grey noise.

Tests that need members clearly better than the constant prediction (guards, review, corrections, the report in
a browser) train on it in seconds; the real competitions' samples are harder than a 32 px model can learn there.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np
import pandas as pd
import pytest
from PIL import Image, ImageDraw

from kagglekit import Competition, SampleSpec, Submission, Task

COLOURS = {"red": (220, 40, 40), "green": (40, 190, 60), "blue": (40, 70, 220), "yellow": (230, 210, 40)}
SHARES = {"red": 0.4, "green": 0.3, "blue": 0.2, "yellow": 0.1}  # imbalanced, so the prior is not uniform


def _paint(rng: np.random.Generator, row: dict) -> Image.Image:
    noise = rng.integers(90, 160, size=(48, 48, 1), dtype=np.uint8).repeat(3, axis=2)
    image = Image.fromarray(noise)
    x, y, r = *rng.integers(16, 32, 2), int(rng.integers(13, 18))
    ImageDraw.Draw(image).ellipse((x - r, y - r, x + r, y + r), fill=COLOURS[row["colour"]])
    return image


def _sample(rng: np.random.Generator, n_train: int, n_test: int) -> SampleSpec:
    def labels(n: int) -> np.ndarray:
        return rng.choice(list(SHARES), size=n, p=list(SHARES.values()))

    train = pd.DataFrame({"id": [f"t{i:03d}" for i in range(n_train)], "colour": labels(n_train)})
    answers = pd.DataFrame({"id": [f"s{i:03d}" for i in range(n_test)], "colour": labels(n_test)})
    return SampleSpec(train=train, answers=answers, paint=_paint, image_format="PNG")


@contextmanager
def registered() -> Iterator[None]:
    """The colours plug-in registered while the block runs, as a user's plug-in is (packs look it up by name)."""
    from kagglekit import registry

    registry.list_competitions()  # the built-in plug-ins first
    with pytest.MonkeyPatch.context() as patch:
        patch.setitem(registry._registered, "colours", colours())
        yield


def colours() -> Competition:
    return Competition(
        name="colours", slug="colours", title="Colours (a test plug-in)", train_csv="train.csv", id_column="id",
        train_image="train/{id}.png", test_images=("test/{id}.png",), sample_submission="sample_submission.csv",
        tasks={"colour": Task("colour")}, metric="accuracy", submission=Submission("label", column="colour"),
        make_sample=_sample,
    )  # fmt: skip


# The shared run of the report, guard, review and browser tests: two members that learn (0.56 to 1.0 accuracy
# over seeds, against 0.31 to 0.38 for the constant prediction), and one trained at a learning rate of 10, which
# learns nothing in 2 epochs (0.06 to 0.25 over seeds; given 5, one-cycle's annealing can rescue it).
RECIPE = """
valid_pct = 0.25
seed = 1
tta = "auto"
[defaults]
size = 32
epochs = 4
lr = 1e-2
batch_size = 8
[[members]]
name = "a"
arch = "resnet10t"
[[members]]
name = "b"
arch = "resnet10t"
resize = "pad"
[[members]]
name = "broken"
arch = "resnet10t"
lr = 10.0
epochs = 2
"""


def plant_wrong_labels(data_dir, n: int) -> dict[str, tuple[str, str]]:
    """Give `n` training rows of `data_dir/train.csv` a wrong colour (the file is rewritten; the images keep
    their real colour): `{id: (given, true)}`."""
    path = data_dir / "train.csv"
    train = pd.read_csv(path, dtype=str)
    rows = train.sample(n, random_state=7).index
    names = list(COLOURS)
    planted = {}
    for row in rows:
        true = train.at[row, "colour"]
        given = names[(names.index(true) + 1) % len(names)]
        train.at[row, "colour"] = given
        planted[train.at[row, "id"]] = (given, true)
    train.to_csv(path, index=False)
    return planted
