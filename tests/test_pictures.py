"""The report's and the review's pictures come from the original files (which `prepare_data` keeps in `source`),
not from the cache entries the loaders read (shrunk to the recipe's 32 px); an entry stands in for a lost file."""

from __future__ import annotations

import base64
import io

import numpy as np
from PIL import Image

from kagglekit import get_competition
from kagglekit.data.dicom import read_dicom
from kagglekit.pipeline.data import prepare_data
from kagglekit.recipe import parse_recipe
from kagglekit.report.html import THUMBNAIL
from kagglekit.report.pictures import image_sizes, thumbnails, viewable
from kagglekit.samples import write_sample

RECIPE = parse_recipe({"members": [{"name": "m", "arch": "resnet10t", "size": 32}]}, "tiny")


def pixels(uri: str) -> Image.Image:
    image = Image.open(io.BytesIO(base64.b64decode(uri.split(",", 1)[1])))
    image.load()
    return image


def test_photo_thumbnails_and_sizes_come_from_the_original_files(paddy_sample, paddy, tmp_path):
    train = prepare_data(paddy, paddy_sample.data_dir, tmp_path / "cache", RECIPE).items.train
    ids = train["id"].iloc[:3].tolist()
    originals = [Image.open(train.set_index("id").at[i, "source"]).size for i in ids]
    shown = [pixels(uri).size for uri in thumbnails(train, ids, paddy)]
    assert shown == [(w * THUMBNAIL // max(w, h), h * THUMBNAIL // max(w, h)) for w, h in originals]
    entries = [pixels(uri).size for uri in thumbnails(train.drop(columns="source"), ids, paddy)]
    assert max(max(size) for size in entries) < THUMBNAIL // 2  # without the originals: the 32 px entries
    sizes = image_sizes(train, paddy, 400)
    assert sizes["count"].sum() == len(train)
    assert set(zip(sizes["width"], sizes["height"], strict=True)) <= {(480, 640), (640, 480)}  # as stored


def test_a_dicom_is_shown_over_its_own_range(tmp_path):
    xray = get_competition("xray")
    sample = write_sample(xray, tmp_path / "data", seed=2, n_train=12, n_test=2)
    train = prepare_data(xray, sample.data_dir, tmp_path / "cache", RECIPE).items.train
    source = train["source"].iloc[0]
    height, width = read_dicom(source).shape[:2]
    assert image_sizes(train.iloc[:1], xray, 1)[["width", "height"]].values.tolist() == [[width, height]]
    shown = np.asarray(pixels(thumbnails(train, [train["id"].iloc[0]], xray)[0]).convert("L"))
    assert max(shown.shape) == min(THUMBNAIL, max(height, width))
    assert shown.min() < 10 and shown.max() > 245  # stretched to the full range, whatever the DICOM's bits


def test_grey_values_are_stretched_and_rgb_is_kept():
    dark = np.linspace(100, 600, 64 * 64).reshape(64, 64).astype(np.uint16)  # a 16-bit image near black
    grey = np.asarray(viewable(dark).convert("L"))
    assert grey.min() == 0 and grey.max() == 255
    colour = np.random.default_rng(0).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    np.testing.assert_array_equal(np.asarray(viewable(colour)), colour)
