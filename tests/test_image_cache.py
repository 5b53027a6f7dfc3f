"""The image cache in a run: unreadable images found before training (skipped, or predicted with the prior), a
second run that decodes nothing, and DICOMs with all their frames training end to end."""

from __future__ import annotations

import json
import logging
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian

from kagglekit import get_competition, load_items, vocabularies, write_sample
from kagglekit.data.cache import load_cached
from kagglekit.data.images import prepare_images, recipe_cover
from kagglekit.data.splits import make_splits
from kagglekit.recipe import Member, parse_recipe
from kagglekit.train import make_dataloaders, make_heads, train_member

TINY = """
valid_pct = 0.25
seed = 1
tta = 0
[defaults]
size = 32
epochs = 1
batch_size = 16
[[members]]
name = "tiny"
arch = "resnet10t"
"""


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def test_recipe_cover_is_the_largest_height_and_width_of_any_stage():
    recipe = parse_recipe({
        "members": [{"name": "a", "arch": "x", "size": [288, 224]},
                    {"name": "b", "arch": "x", "stages": [{"size": 128, "epochs": 1}, {"size": 256, "epochs": 1}]}],
    }, "r")  # fmt: skip
    assert recipe_cover(recipe) == (288, 256)


def test_when_every_test_image_is_unreadable_none_is_left_to_predict(paddy, paddy_sample, tmp_path):
    """`kagglekit predict RUN notimage.jpg` once said "nan is not an image cache entry": the empty readable table got
    every row back, path NaN, through a column assigned from the whole table."""
    items = load_items(paddy, paddy_sample.data_dir)
    bad = tmp_path / "notimage.jpg"
    bad.write_text("not an image")
    test = pd.DataFrame({"id": ["notimage.jpg"], "path": [str(bad)]})
    prepared = prepare_images(paddy, replace(items, train=items.train.head(0), test=test), tmp_path / "cache",
                              cover=(32, 32))  # fmt: skip
    assert len(prepared.items.test) == 0 and prepared.undecodable_test["id"].tolist() == ["notimage.jpg"]


def test_prepare_images_skips_unreadable_training_images_and_returns_unreadable_test_ones(paddy, paddy_sample,
                                                                                          tmp_path, caplog):  # fmt: skip
    data = tmp_path / "data"
    shutil.copytree(paddy_sample.data_dir, data)
    items = load_items(paddy, data)
    bad_train, bad_test = Path(items.train["path"][3]), Path(items.test["path"][1])
    bad_train.write_bytes(bad_train.read_bytes()[:2000])  # cut short: "image file is truncated" in epoch 1, before
    bad_test.write_bytes(b"")  # a 0-byte file: UnidentifiedImageError after training, before
    with caplog.at_level(logging.WARNING):
        prepared = prepare_images(paddy, load_items(paddy, data), tmp_path / "cache", cover=(32, 32))
    assert bad_train.name in caplog.text and "skipped_items.csv" in caplog.text
    skipped = prepared.items.skipped
    assert skipped["path"].tolist() == [str(bad_train)] and "truncated" in skipped["reason"].iloc[0].lower()
    assert prepared.undecodable_test["id"].tolist() == [items.test["id"][1]]
    assert "cannot identify image file" in prepared.undecodable_test["reason"].iloc[0]
    assert len(prepared.items.train) == len(items.train) - 1 and len(prepared.items.test) == len(items.test) - 1
    assert prepared.cache == {"cached": len(items.train) + len(items.test) - 2, "reused": 0, "failed": 2, "noted": 0}
    for entry in prepared.items.train["path"]:
        assert Path(entry).parent == tmp_path / "cache" and min(load_cached(Path(entry)).shape[:2]) == 32


@pytest.mark.slow
def test_a_run_with_broken_images_finishes_and_a_second_run_decodes_nothing(paddy, paddy_sample, tmp_path, caplog):
    from kagglekit.pipeline import job

    data = tmp_path / "data"
    shutil.copytree(paddy_sample.data_dir, data)
    items = load_items(paddy, data)
    bad_train, bad_test = Path(items.train["path"][0]), Path(items.test["path"][0])
    bad_train.write_bytes(bad_train.read_bytes()[:1500])
    bad_test.write_bytes(b"")
    (tmp_path / "tiny.toml").write_text(TINY)
    common = {"recipe": tmp_path / "tiny.toml", "data": data, "runs_dir": tmp_path / "runs",
              "submissions_dir": tmp_path / "subs"}  # fmt: skip
    with caplog.at_level(logging.WARNING):
        first = job.run(paddy, **common)
    assert first.check.ok and "could not be decoded and get the training prior" in caplog.text
    assert _read(first.folder / "undecodable_test.csv")["id"].tolist() == [items.test["id"][0]]
    assert _read(first.folder / "skipped_items.csv")["id"].tolist() == [items.train["id"][0]]
    submission = _read(first.submission)
    assert submission["image_id"].tolist() == items.test["id"].tolist()  # every id, the broken one included
    n_images = len(items.train) + len(items.test)
    record = json.loads((first.folder / "run.json").read_text())
    assert record["metrics"]["image_cache"] == {"cached": n_images - 2, "reused": 0, "failed": 2, "noted": 0}

    second = job.run(paddy, **common, fresh=True)
    record = json.loads((second.folder / "run.json").read_text())
    assert record["metrics"]["image_cache"] == {"cached": 0, "reused": n_images - 2, "failed": 2, "noted": 0}
    # cached and uncached runs see the same images: the same model, the same validation score
    assert second.members[0].valid_score == pytest.approx(first.members[0].valid_score, abs=1e-6)


def _multi_frame(path: Path, frames: int = 3) -> None:
    """Rewrite an uncompressed single-frame DICOM as `frames` frames: the image, then darker copies of it."""
    ds = dcmread(path)
    pixels = ds.pixel_array
    stack = np.stack([pixels // (k + 1) for k in range(frames)])
    ds.NumberOfFrames = frames
    ds.PixelData = stack.astype(pixels.dtype).tobytes()
    ds.save_as(path)


def test_all_frames_train_end_to_end(tmp_path):
    """`dicom_frames = "all"`: each file's frames tiled into one grey image, through the loaders and a member."""
    xray = replace(get_competition("xray"), dicom_frames="all")
    sample = write_sample(get_competition("xray"), tmp_path / "sample", seed=3, n_train=16, n_test=4)
    items = load_items(xray, sample.data_dir)
    plain = [Path(p) for p in items.train["path"] if dcmread(p).file_meta.TransferSyntaxUID == ExplicitVRLittleEndian]
    assert plain, "the sample has uncompressed files"
    for path in plain:
        _multi_frame(path)
    prepared = prepare_images(xray, items, tmp_path / "cache", cover=(64, 64))
    assert len(prepared.items.skipped) == 0 and len(prepared.undecodable_test) == 0
    multi = prepared.items.train[items.train["path"].isin(map(str, plain))]
    tiled = load_cached(Path(multi["path"].iloc[0]))
    assert tiled.dtype == np.uint16 and tiled.ndim == 2  # one grey image: 3 frames on a 2 x 2 grid
    inside = (slice(tiled.shape[0] * 5 // 8, None), slice(tiled.shape[1] * 5 // 8, None))
    assert tiled[inside].max() == 0 and tiled[: tiled.shape[0] // 2, : tiled.shape[1] // 2].max() > 0  # fourth: empty

    member = Member(name="frames", arch="resnet10t", size=32, epochs=1, batch_size=4, aug="none")
    vocab = vocabularies(xray, items)
    split = make_splits(prepared.items.train["id"], valid_pct=0.25, seed=0)
    heads = make_heads(xray, vocab, member)
    x, _ = make_dataloaders(prepared.items.train, split["is_valid"], heads, member, 0, channels=1).valid.one_batch()
    assert x.shape[1:] == (1, 32, 32)
    learn = train_member(member, xray, prepared.items.train, split, vocab, tmp_path / "member", num_workers=0)
    assert len(learn.recorder.values) == 1


def test_a_rebuilt_member_predicts_original_files_as_training_saw_their_cache_entries(paddy, paddy_sample, tmp_path):
    """Trained on cache entries shrunk to the recipe's size, a member rebuilt from its files knows how they were made
    (its member.json says), refuses the original JPEGs as they are, and given them cached the same way (in another
    cache folder: new images) predicts exactly what the learner predicted on the run's entries."""
    from kagglekit.data.cache import CacheSpec, cache_images
    from kagglekit.errors import DataError
    from kagglekit.predict.learner import check_prepared, load_member
    from kagglekit.predict.tta import predict_member
    from kagglekit.train import clear_checkpoint

    items = load_items(paddy, paddy_sample.data_dir)
    prepared = prepare_images(paddy, items, tmp_path / "cache", cover=(40, 40)).items
    member = Member(name="m", arch="resnet10t", size=32, resize="crop", aug="flip", epochs=1, batch_size=16)
    train = prepared.train.head(48)
    split = make_splits(train["id"], seed=0)
    learn = train_member(member, paddy, train, split, vocabularies(paddy, items), tmp_path / "m", num_workers=0)
    clear_checkpoint(tmp_path / "m")
    rebuilt = load_member(tmp_path / "m")
    assert rebuilt.dls.cache_spec == CacheSpec((40, 40), 3, "first")
    originals = items.test.head(6)
    with pytest.raises(DataError, match="not an image cache entry"):
        check_prepared(rebuilt, originals)
    entries = cache_images(originals["path"], tmp_path / "new-cache", rebuilt.dls.cache_spec, workers=0).images
    probs = predict_member(rebuilt, originals.assign(path=[str(entries[Path(p)]) for p in originals["path"]]), 0)
    expected = predict_member(learn, prepared.test.head(6), n_tta=0)
    np.testing.assert_allclose(probs.tasks["label"], expected.tasks["label"], atol=1e-6, rtol=0)
