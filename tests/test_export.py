"""A member folder alone (safetensors + member.json) rebuilds the Learner that trained it: the same loaders,
normalisation and model, so its TTA gives exactly the probabilities the trained Learner gives."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
from PIL import Image
from safetensors.torch import save_file

from kagglekit.data import load_items, vocabularies
from kagglekit.data.splits import make_splits
from kagglekit.errors import DataError
from kagglekit.predict.learner import load_member
from kagglekit.predict.tta import predict_member
from kagglekit.recipe import Member
from kagglekit.train import clear_checkpoint, train_member

pytestmark = pytest.mark.slow  # trains four tiny members (about a minute on two cores)


@pytest.fixture(scope="module")
def weights_file(tmp_path_factory) -> Path:
    """Local 'pretrained' weights, so members record normalisation statistics without any download."""
    path = tmp_path_factory.mktemp("weights") / "resnet10t.safetensors"
    save_file(timm.create_model("resnet10t", pretrained=False, num_classes=0).state_dict(), str(path))
    return path


def _train(member: Member, competition, train: pd.DataFrame, vocab: dict, folder: Path):
    """Train like the pipeline does, and leave the folder as a finished run leaves it (checkpoint cleared)."""
    is_valid = pd.Series(make_splits(train["id"], seed=0)["is_valid"].to_numpy(), index=train.index)
    learn = train_member(member, competition, train, is_valid, vocab, folder, num_workers=0)
    clear_checkpoint(folder)
    return learn


@pytest.fixture(scope="module")
def paddy_members(tmp_path_factory, paddy, paddy_sample, weights_file):
    """One tiny member per resize method, trained once: name -> (folder, learner, test items)."""
    items = load_items(paddy, paddy_sample.data_dir)
    vocab = vocabularies(paddy, items)
    train = items.train.head(40)
    common = {"arch": "resnet10t", "epochs": 1, "batch_size": 16, "freeze_epochs": 0}
    members = [
        # two heads, and local 'pretrained' weights so that Normalize is part of the pipeline to reproduce
        Member(name="squish", size=32, resize="squish", aug="flip", tasks={"label": 1.0, "variety": 0.5},
               pretrained=str(weights_file), weight=3.0, **common),
        Member(name="crop", size=32, resize="crop", aug="default", **common),
        # non-square: reflection padding, and the preset's validation-time centre crop on the batch
        Member(name="pad", size=(32, 48), resize="pad", aug="default", weight=3.0, **common),
    ]  # fmt: skip
    root = tmp_path_factory.mktemp("members")
    return {m.name: (root / m.name, _train(m, paddy, train, vocab, root / m.name), items.test.head(6)) for m in members}


@pytest.fixture(scope="module")
def grey_member(tmp_path_factory, paddy, weights_file):
    """A one-channel member trained on 16-bit PNGs (what the DICOM cache holds): (folder, learner, items)."""
    folder = tmp_path_factory.mktemp("grey")
    rng = np.random.default_rng(0)
    rows = []
    for n in range(24):
        label = "blast" if n % 2 else "normal"
        ramp = np.linspace(0, 60000 if label == "blast" else 20000, 40)
        array = (ramp[None, :] + rng.integers(0, 5000, size=(56, 40))).astype(np.uint16)  # 56 high, 40 wide
        path = folder / "images" / f"grey{n:02d}.png"
        path.parent.mkdir(exist_ok=True)
        image = Image.fromarray(array)
        assert image.mode == "I;16"
        image.save(path)
        rows.append({"id": path.name, "path": str(path), "label": label})
    items = pd.DataFrame(rows)
    competition = replace(paddy, images="dicom")  # one input channel
    member = Member(name="grey", arch="resnet10t", size=(32, 24), resize="pad", aug="none", epochs=1, batch_size=8,
                    pretrained=str(weights_file), freeze_epochs=0)  # fmt: skip
    learn = _train(member, competition, items, {"label": ["blast", "normal"]}, folder / "member")
    return folder / "member", learn, items.head(6)


def _same(rebuilt, learn, items: pd.DataFrame, n_tta: int) -> None:
    """The rebuilt Learner's TTA probabilities are the trained Learner's, task by task."""
    ours, theirs = predict_member(rebuilt, items, n_tta), predict_member(learn, items, n_tta)
    assert ours.ids == theirs.ids == items["id"].tolist() and ours.vocab == theirs.vocab
    for task in theirs.tasks:
        np.testing.assert_allclose(ours.tasks[task], theirs.tasks[task], atol=1e-6, rtol=0)


@pytest.mark.parametrize("name", ["squish", "crop", "pad"])
def test_rebuilt_member_predicts_what_the_trained_learner_predicts_with_tta(paddy_members, name):
    folder, learn, items = paddy_members[name]
    _same(load_member(folder), learn, items, n_tta=2)


def test_a_multi_task_member_rebuilds_every_head_with_its_normalisation(paddy_members):
    folder, _, items = paddy_members["squish"]
    rebuilt = load_member(folder)
    assert [h.task for h in rebuilt.loss_func.heads] == ["label", "variety"]
    [normalize] = [t for t in rebuilt.dls.after_batch.fs if type(t).__name__ == "Normalize"]
    np.testing.assert_allclose(normalize.mean.flatten().cpu(), [0.485, 0.456, 0.406], atol=1e-6)  # timm's stats
    probs = predict_member(rebuilt, items, 0)
    assert probs.tasks["label"].shape == (6, 10) and probs.tasks["variety"].shape[0] == 6
    np.testing.assert_allclose(probs.tasks["label"].sum(1), 1, atol=1e-5)


def test_finished_member_folders_hold_no_pickles(paddy_members, grey_member):
    for folder in [f for f, _, _ in paddy_members.values()] + [grey_member[0]]:
        assert sorted(p.name for p in folder.iterdir()) == ["member.json", "model.safetensors"]
        assert not list(folder.rglob("*.pkl")) and not list(folder.rglob("*.pth"))


def test_grey_member_rebuilds_for_16_bit_images(grey_member):
    folder, learn, items = grey_member
    rebuilt = load_member(folder)
    assert next(rebuilt.model.parameters()).shape[1] == 1  # one input channel, as in training
    _same(rebuilt, learn, items, n_tta=1)


def test_a_folder_that_is_not_a_finished_member_is_named(tmp_path):
    with pytest.raises(DataError, match=f"{tmp_path / 'member.json'} does not describe a trained member"):
        load_member(tmp_path)
