"""Export: a member folder alone (safetensors + member.json) predicts exactly what the fastai learner did."""

from __future__ import annotations

import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pydicom.data
import pytest
import timm
from PIL import Image
from safetensors.torch import save_file
from typer.testing import CliRunner

from kagglekit.data import load_items, vocabularies
from kagglekit.data.cache import cache_images
from kagglekit.data.splits import make_splits
from kagglekit.ensemble import mean_probabilities
from kagglekit.errors import DataError, DicomReadError
from kagglekit.predict.export import load_member, predict_run
from kagglekit.predict.tta import predict_member
from kagglekit.recipe import Member
from kagglekit.train import clear_checkpoint, train_member

pytestmark = pytest.mark.slow  # trains four tiny members (about a minute on two cores)

MR_SMALL = Path(pydicom.data.DATA_ROOT) / "test_files" / "MR_small.dcm"  # 64x64 16-bit, shipped with pydicom


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


def _paths(items: pd.DataFrame) -> list[Path]:
    return [Path(p) for p in items["path"]]


@pytest.mark.parametrize("name", ["squish", "crop", "pad"])
def test_exported_member_predicts_what_the_learner_predicts(paddy_members, name):
    folder, learn, items = paddy_members[name]
    exported = load_member(folder)
    probs = exported.predict(_paths(items), batch_size=4)  # batches of 4, 2: batching must not matter
    expected = predict_member(learn, items, n_tta=0)
    assert probs.ids == [Path(p).name for p in items["path"]] == items["id"].tolist()
    assert probs.vocab == expected.vocab
    for task in expected.tasks:
        np.testing.assert_allclose(probs.tasks[task], expected.tasks[task], atol=1e-4, rtol=0)


def test_a_multi_task_member_exports_every_head_with_normalisation(paddy_members):
    folder, _, items = paddy_members["squish"]
    exported = load_member(folder)
    assert [h.task for h in exported.heads] == ["label", "variety"]
    assert exported.normalization is not None and len(exported.normalization["mean"]) == 3
    probs = exported.predict(_paths(items))
    assert probs.tasks["label"].shape == (6, 10) and probs.tasks["variety"].shape[0] == 6
    np.testing.assert_allclose(probs.tasks["label"].sum(1), 1, atol=1e-5)


def test_finished_member_folders_hold_no_pickles(paddy_members, grey_member):
    for folder in [f for f, _, _ in paddy_members.values()] + [grey_member[0]]:
        assert sorted(p.name for p in folder.iterdir()) == ["member.json", "model.safetensors"]
        assert not list(folder.rglob("*.pkl")) and not list(folder.rglob("*.pth"))


def test_grey_member_predicts_16_bit_pngs_and_dicoms(grey_member, tmp_path):
    folder, learn, items = grey_member
    exported = load_member(folder)
    assert exported.channels == 1 and len(exported.normalization["mean"]) == 1
    probs = exported.predict(_paths(items))
    expected = predict_member(learn, items, n_tta=0)
    np.testing.assert_allclose(probs.tasks["label"], expected.tasks["label"], atol=1e-4, rtol=0)

    # A .dcm goes through the same conversion as the training cache: same probabilities as its cache entry.
    (entry,) = cache_images([MR_SMALL], tmp_path / "cache", exported.cache, workers=0).images.values()
    from_dicom, from_entry = exported.predict([MR_SMALL]), exported.predict([entry])
    assert from_dicom.ids == ["MR_small.dcm"]
    np.testing.assert_array_equal(from_dicom.tasks["label"], from_entry.tasks["label"])
    broken = tmp_path / "broken.dcm"
    broken.write_bytes(b"not a dicom")
    with pytest.raises(DicomReadError, match="broken.dcm"):
        exported.predict([MR_SMALL, broken])


@pytest.fixture(scope="module")
def run_dir(paddy_members, tmp_path_factory) -> Path:
    """A run folder as the pipeline lays it out: one plain member and one 2-fold member (weight 3)."""
    run = tmp_path_factory.mktemp("runs") / "paddy" / "20250101-000000_tiny"
    shutil.copytree(paddy_members["crop"][0], run / "members" / "a")
    shutil.copytree(paddy_members["pad"][0], run / "members" / "b" / "fold0")
    shutil.copytree(paddy_members["squish"][0], run / "members" / "b" / "fold1")
    (run / "run.json").write_text("{}")
    return run


def test_predict_run_is_the_weighted_mean_of_members_with_folds_averaged(paddy_members, run_dir):
    items = paddy_members["crop"][2]
    plain = {name: load_member(folder).predict(_paths(items)) for name, (folder, _, _) in paddy_members.items()}
    probs = predict_run(run_dir, _paths(items))
    expected = mean_probabilities(
        [plain["crop"], mean_probabilities([plain["pad"], plain["squish"]])], weights=[1.0, 3.0]
    )
    assert probs.ids == expected.ids and probs.vocab == expected.vocab
    for task in ("label", "variety"):  # variety: only fold1 predicts it, so it is that fold's alone
        np.testing.assert_allclose(probs.tasks[task], expected.tasks[task], atol=1e-6)
    with pytest.raises(DataError, match="must be unique"):
        predict_run(run_dir, _paths(items)[:1] * 2)


def test_cli_prints_top_classes_and_writes_the_csv(paddy_members, run_dir, tmp_path):
    from kagglekit.cli import app

    items = paddy_members["crop"][2]
    out = tmp_path / "probs.csv"
    image_folder = Path(items["path"].iloc[0]).parent
    result = CliRunner().invoke(
        app, ["predict", str(run_dir), *items["path"].iloc[:2], "--output", str(out)], env={"COLUMNS": "200"}
    )
    assert result.exit_code == 0, result.output
    assert items["id"].iloc[0] in result.output and "top class per task" in result.output
    frame = pd.read_csv(out)
    assert frame["id"].tolist() == items["id"].iloc[:2].tolist()
    assert {"label:blast", "variety:ADT45"} <= set(frame.columns)
    label_columns = [c for c in frame.columns if c.startswith("label:")]
    np.testing.assert_allclose(frame[label_columns].sum(axis=1), 1, atol=1e-5)
    assert not list(tmp_path.glob(".tmp-*"))  # written through a temporary file, nothing left behind

    folder_result = CliRunner().invoke(app, ["predict", str(run_dir), str(image_folder)], env={"COLUMNS": "200"})
    assert folder_result.exit_code == 0, folder_result.output
    missing = CliRunner().invoke(app, ["predict", str(run_dir), str(tmp_path / "nope.jpg")])
    assert missing.exit_code == 2 and "no such file" in missing.output
