"""Loaders fed from memory: the views they gather, augmentation on uint8 images on the CPU, weighted sampling, and
the settings they take on a GPU (checked without one)."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
import torch
from fastai.vision.augment import Flip, RandomResizedCropGPU

from kagglekit.data.pixels import model_view
from kagglekit.recipe import Member
from kagglekit.train import Head, make_dataloaders
from kagglekit.train.augment import CpuAugment
from kagglekit.train.batches import ToFloat
from kagglekit.train.loaders import default_workers

HEAD = Head("label", "label", "single", ("a", "b"), 1.0, 0)


def _table(tmp_path, n=8, shape=(40, 60)) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        path = tmp_path / f"image{i}.{shape[0]}x{shape[1]}.npy"  # named as image cache entries are
        array = rng.integers(0, 255, (*shape, 3), dtype=np.uint8)
        array[:, :, 0] = i * 20  # each image recognisable by its red channel
        np.save(path, array)
        rows.append({"id": str(i), "path": str(path), "label": "ab"[i % 2]})
    return pd.DataFrame(rows)


def _images(dl) -> list[np.ndarray]:
    return [x.numpy() for x, *_ in dl]


def test_batches_are_integer_until_the_device_and_float_after(tmp_path):
    train = _table(tmp_path)
    member = Member(name="m", arch="resnet10t", size=32, resize="squish", aug="none", batch_size=4)
    dls = make_dataloaders(train, pd.Series([False] * 4 + [True] * 4), [HEAD], member, num_workers=0)
    raw = dls.valid.do_batch([0, 1])[0]
    assert raw.dtype == torch.uint8 and raw.shape == (2, 3, 32, 32)
    assert raw.is_contiguous(memory_format=torch.channels_last)  # the store's layout: channels_last for free
    x, y = dls.valid.one_batch()
    assert x.dtype == torch.float32 and x.min() >= 0 and x.max() <= 1
    torch.testing.assert_close(x[:2], raw.float() / 255)
    assert y.tolist() == [0, 1, 0, 1]
    assert isinstance(dls.after_batch.fs[0], ToFloat)


def test_validation_sees_the_centred_view_and_training_random_crops(tmp_path):
    train = _table(tmp_path, n=4)
    member = Member(name="m", arch="resnet10t", size=32, resize="crop", aug="none", batch_size=2)
    dls = make_dataloaders(train, pd.Series([False, False, True, True]), [HEAD], member, num_workers=0)
    (valid,) = _images(dls.valid)
    expected = model_view(np.load(train["path"][2]), (32, 32), "crop").transpose(2, 0, 1) / 255
    np.testing.assert_allclose(valid[0], expected, atol=1e-6)
    same = train.assign(path=train["path"][0])  # every training row the same image: only the crop can differ
    dls = make_dataloaders(same, pd.Series([False, False, True, True]), [HEAD], member, num_workers=0)
    crops = {tuple(batch[0, 1, 0, :8].tolist()) for _ in range(6) for batch in _images(dls.train)}
    assert len(crops) > 1  # the 40x60 image, fitted to 32x48, is cut at different places each epoch


def test_tta_with_split_idx_0_augments_and_the_plain_pass_does_not(tmp_path):
    train = _table(tmp_path)
    member = Member(name="m", arch="resnet10t", size=32, resize="squish", aug="default", batch_size=4)
    dls = make_dataloaders(train, pd.Series([False] * 4 + [True] * 4), [HEAD], member, num_workers=0)
    test = dls.test_dl(train.head(3))
    (plain,) = _images(test)
    with test.dataset.set_split_idx(0):
        augmented = [_images(test)[0] for _ in range(3)]
    (again,) = _images(test)
    np.testing.assert_array_equal(plain, again)
    assert all(not np.allclose(a, plain) for a in augmented)
    assert test.dataset.rows.tolist() == dls.train.dataset.store.add(train["path"].head(3).tolist()).tolist()


def test_weighted_sampling_draws_rows_in_proportion(tmp_path):
    train = _table(tmp_path)
    weights = np.array([0, 0, 0, 1, 0, 0, 0, 0], float)  # only row 3 can be drawn
    member = Member(name="m", arch="resnet10t", size=16, aug="none", batch_size=2)
    dls = make_dataloaders(train, pd.Series([False] * 6 + [True] * 2), [HEAD], member, num_workers=0, weights=weights)
    reds = {round(float(x[0, 0, 0, 0]) * 255) for x, _ in dls.train}
    assert reds == {60}  # image 3's red value


def test_cpu_augment_none_and_flip():
    image = np.arange(16 * 24 * 3, dtype=np.uint8).reshape(16, 24, 3)
    rng = np.random.default_rng(0)
    assert CpuAugment("none", (16, 24))(image, rng) is image
    flip = CpuAugment("flip", (16, 24))
    outcomes = [flip(image, rng) for _ in range(40)]
    flipped = sum(np.array_equal(o, image[:, ::-1]) for o in outcomes)
    unchanged = sum(np.array_equal(o, image) for o in outcomes)
    assert flipped + unchanged == 40 and 8 < flipped < 32  # p = 0.5, exact mirrors, nothing else touched


def test_cpu_augment_default_matches_fastais_ranges():
    rng = np.random.default_rng(1)
    ramp = np.tile(np.linspace(0, 255, 48, dtype=np.uint8)[None, :, None], (32, 1, 3))
    augment = CpuAugment("default", (32, 48))
    outcomes = [augment(ramp, rng) for _ in range(60)]
    assert all(o.shape == (32, 48, 3) and o.dtype == np.uint8 for o in outcomes)
    changed = [o for o in outcomes if not np.array_equal(o, ramp)]
    assert len(changed) > 50
    # the random crop keeps at least 75% of the area and zoom at most 1.1: the ramp's span narrows by at most
    # 1 - sqrt(0.75) / 1.1 (plus rotation and warp), never widens beyond the image's own range
    spans = [float(o[16, -1, 0]) - float(o[16, 0, 0]) for o in outcomes]
    assert min(abs(s) for s in spans) > 0.5 * 255 * 0.75 and max(abs(s) for s in spans) <= 255
    assert any(s < 0 for s in spans) and any(s > 0 for s in spans)  # flipped and not
    means = [o.mean() for o in outcomes]
    assert np.std(means) > 1  # brightness and contrast vary


def test_cpu_augment_keeps_16_bit_grey():
    grey = np.linspace(0, 60000, 32 * 32).reshape(32, 32).astype(np.uint16)
    out = CpuAugment("overhead", (32, 32))(grey, np.random.default_rng(2))
    assert out.dtype == np.uint16 and out.shape == (32, 32) and len(np.unique(out)) > 256


def test_on_a_gpu_augmentation_runs_on_the_batch_and_loaders_pin_memory(tmp_path, monkeypatch):
    monkeypatch.setattr("os.sched_getaffinity", lambda pid: set(range(4)))
    monkeypatch.setattr("fastai.data.core.to_device", lambda b, *args, **kwargs: b)  # no GPU to move batches to
    assert default_workers(torch.device("cpu")) == 0
    assert default_workers(torch.device("cuda")) == 3
    train = _table(tmp_path)
    member = Member(name="m", arch="resnet10t", size=32, aug="default", batch_size=4)
    dls = make_dataloaders(train, pd.Series([False] * 6 + [True] * 2), [HEAD], member, device="cuda")
    assert dls.train.fake_l.num_workers == 3 and dls.train.fake_l.pin_memory
    assert dls.train.fake_l.persistent_workers and dls.valid.fake_l.persistent_workers
    kinds = {type(t) for t in dls.train.after_batch.fs}
    assert {ToFloat, Flip, RandomResizedCropGPU} <= kinds and dls.train.augment is None
    cpu = make_dataloaders(train, pd.Series([False] * 6 + [True] * 2), [HEAD], member, device="cpu")
    assert isinstance(cpu.train.augment, CpuAugment) and [type(t) for t in cpu.train.after_batch.fs] == [ToFloat]
    assert cpu.train.fake_l.num_workers == 0 and not cpu.train.fake_l.pin_memory


@pytest.mark.parametrize("resize", ["squish", "crop", "pad"])
def test_every_resize_method_gives_the_members_size(tmp_path, resize):
    train = _table(tmp_path, shape=(50, 30))
    member = Member(name="m", arch="resnet10t", size=(24, 32), resize=resize, aug="default", batch_size=4)
    dls = make_dataloaders(train, pd.Series([False] * 6 + [True] * 2), [HEAD], member, num_workers=0)
    assert dls.train.one_batch()[0].shape == (4, 3, 24, 32) and dls.valid.one_batch()[0].shape == (2, 3, 24, 32)
