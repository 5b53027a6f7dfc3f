"""fastai's `dls.show_batch()` and `learn.show_results()` on kagglekit's in-memory loaders: the pixels drawn are the
batch's, normalisation undone, and each image is titled with its labels (one line per task)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
import pytest
import torch
from fastai.data.transforms import Normalize
from fastai.vision.core import imagenet_stats

import kagglekit as kk
from kagglekit.recipe import Member
from kagglekit.train import Head, make_dataloaders
from kagglekit.train.learner import create_learner

LABEL = Head("label", "label", "single", ("a", "b", "c"), 1.0, 0)
TAGS = Head("tags", "tags", "multi", ("x", "y", "z"), 1.0, 3)
TAG_SETS = ("x", "y z", "", "x z")
MEMBER = Member(name="m", arch="resnet10t", size=32, resize="squish", aug="none", batch_size=4, pretrained=False)


@pytest.fixture(autouse=True)
def _figures():
    """Draw without a display, as in CI, and drop the figures each test made."""
    plt.switch_backend("Agg")
    plt.close("all")
    yield
    plt.close("all")


def _table(tmp_path, n=8, grey=False) -> pd.DataFrame:
    """`n` random 32x32 image cache entries (the loaders' size: squished, they reach the batch unchanged); grey ones
    16-bit, in the middle of the range (where stretching each image to its own range would show)."""
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        path = tmp_path / f"image{i}.32x32.npy"
        if grey:
            np.save(path, rng.integers(10_000, 50_000, (32, 32), dtype=np.uint16))
        else:
            np.save(path, rng.integers(0, 256, (32, 32, 3), dtype=np.uint8))
        rows.append({"id": str(i), "path": str(path), "label": "abc"[i % 3], "tags": TAG_SETS[i % 4]})
    return pd.DataFrame(rows)


def _normalised(dls) -> None:
    """The ImageNet normalisation a pretrained learner adds to the loaders (fastai's `_add_norm`)."""
    dls.add_tfms([Normalize.from_stats(*imagenet_stats, cuda=False)], "after_batch")


def _drawn():
    """The axes fastai drew on, those that show an image: (image array, title) each."""
    axes = [ax for ax in plt.gcf().axes if ax.images]
    return [np.asarray(ax.images[0].get_array()) for ax in axes], [ax.get_title() for ax in axes]


def test_show_batch_draws_the_stored_pixels_titled_with_their_labels(tmp_path):
    train = _table(tmp_path)
    dls = make_dataloaders(train, pd.Series([False] * 4 + [True] * 4), [LABEL], MEMBER, num_workers=0)
    _normalised(dls)
    assert dls.valid.one_batch()[0].mean() < 0.3  # the batch is normalised: drawing it as it is would be wrong
    dls.valid.show_batch(max_n=3, ncols=3, figsize=(6, 2))
    images, titles = _drawn()
    valid = train.tail(4).head(3)
    assert titles == valid["label"].tolist()
    assert plt.gcf().get_size_inches().tolist() == [6, 2]
    for image, path in zip(images, valid["path"], strict=True):
        stored = np.load(path)
        assert image.shape == stored.shape and image.dtype == np.uint8
        np.testing.assert_allclose(image, stored, atol=1)  # float32 normalise and back: within rounding


@pytest.mark.parametrize("device", ["cpu", "cuda"])
def test_show_batch_draws_a_given_training_batch_as_augmented(tmp_path, monkeypatch, device):
    """On the CPU the loader augments the uint8 images; on a GPU fastai's batch transforms augment the float batch
    (checked without one: batches stay where they are)."""
    for module in ("fastai.data.core", "fastai.data.load"):
        monkeypatch.setattr(f"{module}.to_device", lambda b, *args, **kwargs: b)
    train = _table(tmp_path)
    member = Member(name="m", arch="resnet10t", size=32, resize="squish", aug="default", batch_size=4)
    dls = make_dataloaders(train, pd.Series([False] * 4 + [True] * 4), [LABEL], member, num_workers=0, device=device)
    assert (dls.train.augment is None) == (device == "cuda")
    _normalised(dls)
    batch = dls.train.one_batch()
    dls.show_batch(batch, max_n=4)  # DataLoaders.show_batch: the training loader's
    images, titles = _drawn()
    assert titles == [LABEL.vocab[i] for i in batch[1].tolist()]
    mean, std = (torch.tensor(s).view(1, 3, 1, 1) for s in imagenet_stats)
    pixels = ((batch[0] * std + mean).clamp(0, 1) * 255).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(np.stack(images), pixels, atol=0.51)
    stored = np.stack([np.load(p) for p in train["path"]])
    assert not any(np.array_equal(image, s) for image in images for s in stored)  # augmented, not the stored images


def test_multi_label_and_multi_task_titles_one_line_per_task_tags_joined_by_semicolons(tmp_path):
    train = _table(tmp_path)
    is_valid = pd.Series([False] * 4 + [True] * 4)
    dls = make_dataloaders(train, is_valid, [LABEL, TAGS], MEMBER, num_workers=0)
    dls.valid.show_batch(max_n=4)
    _, titles = _drawn()
    assert titles == ["b\nx", "c\ny;z", "a\n", "b\nx;z"]  # rows 4-7: no tags is an empty line
    tags_only = make_dataloaders(train, is_valid, [TAGS], MEMBER, num_workers=0)
    plt.close("all")
    tags_only.valid.show_batch(max_n=2)
    assert _drawn()[1] == ["x", "y;z"]


def test_16_bit_grey_images_are_drawn_grey_on_a_fixed_scale(tmp_path):
    train = _table(tmp_path, grey=True)
    dls = make_dataloaders(train, pd.Series([False] * 4 + [True] * 4), [LABEL], MEMBER, num_workers=0, channels=1)
    dls.add_tfms([Normalize.from_stats([0.45], [0.22], cuda=False)], "after_batch")  # create_learner's grey stats
    dls.valid.show_batch(max_n=2)
    images, titles = _drawn()
    assert titles == ["b", "c"]
    shown = [ax.images[0] for ax in plt.gcf().axes if ax.images]
    for artist, image, path in zip(shown, images, train["path"][4:6], strict=True):
        assert artist.get_cmap().name == "gray" and (artist.norm.vmin, artist.norm.vmax) == (0, 255)
        np.testing.assert_allclose(image, np.load(path) / 65535 * 255, atol=0.51)


def test_the_notebook_path_member_dataloaders_shows_paddys_two_tasks(paddy, paddy_sample):
    items = kk.load_items(paddy, paddy_sample.data_dir)
    train = items.train.head(16).reset_index(drop=True)
    split = kk.make_splits(train["id"], valid_pct=0.25, seed=0)
    member = Member(name="m", arch="resnet10t", size=32, batch_size=4, tasks={"label": 1.0, "variety": 0.5})
    dls = kk.member_dataloaders(member, paddy, train, split, kk.vocabularies(paddy, items))
    dls.valid.show_batch(max_n=4)
    _, titles = _drawn()
    valid = dls.valid.items.head(4)
    assert titles == [f"{label}\n{variety}" for label, variety in zip(valid["label"], valid["variety"], strict=True)]
    assert set(valid["id"]) <= set(split.loc[split["is_valid"], "id"])


def test_show_results_titles_targets_over_predictions_green_when_right(tmp_path):
    train = _table(tmp_path)
    dls = make_dataloaders(train, pd.Series([False] * 4 + [True] * 4), [LABEL, TAGS], MEMBER, num_workers=0)
    learn = create_learner(dls, MEMBER, [LABEL, TAGS])
    probs, *_ = learn.get_preds(dl=dls.valid)
    labels = [LABEL.vocab[i] for i in probs[:, :3].argmax(1).tolist()]
    tags = [";".join(t for t, p in zip(TAGS.vocab, row, strict=True) if p > 0.5) for row in probs[:, 3:].tolist()]
    learn.show_results(shuffle=False, max_n=4)
    _, titles = _drawn()
    valid = train.tail(4)
    targets = (valid["label"] + "\n" + valid["tags"].str.replace(" ", ";")).tolist()
    assert titles == [f"{t}\n{label}\n{tag}" for t, label, tag in zip(targets, labels, tags, strict=True)]

    single = make_dataloaders(train, pd.Series([False] * 4 + [True] * 4), [LABEL], MEMBER, num_workers=0)
    learn = create_learner(single, MEMBER, [LABEL])
    predicted = learn.get_preds(dl=single.valid)[0].argmax(1).tolist()
    plt.close("all")
    learn.show_results(shuffle=False, max_n=4)
    axes = [ax for ax in plt.gcf().axes if ax.images]
    for ax, label, p in zip(axes, valid["label"], predicted, strict=True):
        assert ax.get_title() == f"{label}\n{LABEL.vocab[p]}"
        assert ax.title.get_color() == ("green" if LABEL.vocab[p] == label else "red")
