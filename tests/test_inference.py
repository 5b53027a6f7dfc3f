"""Train once, predict anywhere: a run's inference pack (safetensors + JSON) reproduces the run's own submission
through the same TTA, ensemble and writing stages, within a time budget, and in a faked Kaggle rerun of the inference
notebook on a larger hidden test set with every network connection blocked."""

from __future__ import annotations

import json
import logging
import re
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import timm
from kaggle_notebook import run_offline
from kaggle_server import kaggle_stand_in
from safetensors.torch import save_file
from typer.testing import CliRunner

import kagglekit as kk
from kagglekit.cli import app
from kagglekit.data import load_items, vocabularies
from kagglekit.ensemble import class_shares
from kagglekit.errors import BudgetError
from kagglekit.kaggle import packs as kaggle_packs
from kagglekit.kaggle.kernels import INFERENCE_NOTEBOOK
from kagglekit.predict import budget
from kagglekit.predict.budget import MemberCost
from kagglekit.predict.inputs import prepare_submission_test
from kagglekit.predict.pack import PACK_FILE, load_pack
from kagglekit.predict.submission import PredictionResult, member_probabilities
from kagglekit.submission.checks import check_submission
from kagglekit.train import batches

pytestmark = [pytest.mark.slow, pytest.mark.usefixtures("loopback_only")]

N_TEST = 16  # two full batches of 8: the hidden test set's extra images come after them (see the rerun test)
RECIPE = """
valid_pct = 0.25
tta = 1
num_workers = 0
ensemble_weights = "tuned"
keep_broken_members = true  # one epoch at 32 px may not beat the constant prediction: packing is tested here

[defaults]
size = 32
epochs = 1
batch_size = 8
freeze_epochs = 0

[[members]]
name = "crop"
arch = "resnet10t"
resize = "crop"
aug = "default"
pretrained = "{weights}"

[[members]]
name = "folded"
arch = "resnet10t"
folds = 2
aug = "flip"
"""


@pytest.fixture(scope="module")
def paddy_run(tmp_path_factory, paddy):
    """A finished run: a member with local 'pretrained' weights (so batches are normalised) and a 2-fold member,
    tuned ensemble weights, one TTA pass."""
    root = tmp_path_factory.mktemp("paddy-run")
    sample = kk.write_sample(paddy, root / "data", seed=3, n_train=48, n_test=N_TEST)
    weights = root / "resnet10t.safetensors"
    save_file(timm.create_model("resnet10t", pretrained=False, num_classes=0).state_dict(), str(weights))
    (root / "tiny.toml").write_text(RECIPE.format(weights=weights))
    result = kk.run(paddy, root / "tiny.toml", data=sample.data_dir, runs_dir=root / "runs",
                    submissions_dir=root / "submissions")  # fmt: skip
    assert result.check.ok
    return result, sample


@pytest.fixture(scope="module")
def pack_dir(paddy_run, tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("pack") / "pack"
    kk.export_pack(paddy_run[0].folder, folder)
    return folder


def _predict(source: Path, data: Path, tmp_path: Path, **options) -> PredictionResult:
    return kk.predict_submission(source, data, runs_dir=tmp_path / "runs", submissions_dir=tmp_path / "subs", **options)


def _same_as_run(result, run, atol: float = 1e-5) -> None:
    """The prediction's submission is the run's, and its ensemble probabilities are within `atol` of the run's."""
    pd.testing.assert_frame_equal(pd.read_csv(result.submission), pd.read_csv(run.submission))
    ours, theirs = (kk.Probabilities.load(folder / "ensemble", "test") for folder in (result.folder, run.folder))
    assert ours.ids == theirs.ids and ours.vocab == theirs.vocab
    for task in theirs.tasks:
        np.testing.assert_allclose(ours.tasks[task], theirs.tasks[task], atol=atol, rtol=0)


# --- the pack ---


def test_pack_holds_safetensors_and_json_with_what_the_ensemble_used(paddy_run, pack_dir, paddy):
    run, sample = paddy_run
    files = sorted(p.name for p in pack_dir.iterdir())
    assert files == [
        "crop.json", "crop.safetensors", "folded__fold0.json", "folded__fold0.safetensors", "folded__fold1.json",
        "folded__fold1.safetensors", PACK_FILE,
    ]  # fmt: skip
    for path in pack_dir.iterdir():  # no pickle anywhere: safetensors start with a JSON header's length, JSON is text
        assert not path.read_bytes().startswith(b"\x80")
    saved = json.loads((pack_dir / PACK_FILE).read_text())
    assert saved["competition"] == {"name": "paddy", "slug": paddy.slug}
    assert saved["kagglekit_version"] == kk.__version__
    assert (saved["tta"], saved["tuned_weights"]) == (1, True)
    # the image cache settings of the run (its recipe's largest size), which new test images are prepared with
    assert saved["images"] == {"kind": "photo", "cover": [32, 32], "channels": 3, "frames": "first"}
    assert saved["source"]["run"] == run.folder.name
    used = dict(zip(run.ensemble.members, run.ensemble.weights, strict=True))
    assert {m["name"]: m["weight"] for m in saved["members"]} == used
    assert [m["parts"] for m in saved["members"]] == [["crop"], ["folded__fold0", "folded__fold1"]]
    items = load_items(paddy, sample.data_dir)
    shares = class_shares(items.train, paddy, vocabularies(paddy, items))
    np.testing.assert_allclose(saved["prior"]["label"], shares["label"], atol=1e-7)
    assert saved["vocab"]["label"] == list(paddy.tasks["label"].classes)
    crop = json.loads((pack_dir / "crop.json").read_text())
    assert (crop["member"]["arch"], crop["size"], crop["resize"], crop["channels"]) == (
        "resnet10t",
        [32, 32],
        "crop",
        3,
    )
    assert crop["heads"][0]["vocab"] == saved["vocab"]["label"] and len(crop["normalization"]["mean"]) == 3


def test_export_refuses_what_it_cannot_pack(paddy_run, pack_dir, tmp_path):
    with pytest.raises(kk.DataError, match="already exists and is not an empty folder"):
        kk.export_pack(paddy_run[0].folder, pack_dir)
    unfinished = tmp_path / "run"
    shutil.copytree(paddy_run[0].folder, unfinished)
    record = json.loads((unfinished / "run.json").read_text())
    (unfinished / "run.json").write_text(json.dumps({**record, "status": "failed in train:crop"}))
    with pytest.raises(kk.DataError, match="has not finished"):
        kk.export_pack(unfinished, tmp_path / "pack")
    with pytest.raises(kk.DataError, match="neither an inference pack"):
        load_pack(tmp_path)


@pytest.mark.parametrize("source", ["pack", "run folder"])
def test_pack_reproduces_the_runs_submission(paddy_run, pack_dir, tmp_path, source):
    run, sample = paddy_run
    result = _predict(pack_dir if source == "pack" else run.folder, sample.data_dir, tmp_path)
    assert result.check.ok and not result.rerun
    _same_as_run(result, run)
    record = json.loads((result.folder / "run.json").read_text())
    assert record["status"] == "finished" and record["config"]["pack_source"]["run"] == run.folder.name
    assert record["metrics"]["plan"]["members"] == ["crop", "folded"] and record["metrics"]["plan"]["tta"] == 1
    assert json.loads(Path(f"{result.submission}.source.json").read_text())["run"] == str(result.folder.resolve())


def test_unreadable_test_photo_gets_the_training_prior(paddy_run, pack_dir, tmp_path, caplog):
    sample = paddy_run[1]
    data = tmp_path / "data"
    shutil.copytree(sample.data_dir, data)
    broken = sorted((data / "test_images").iterdir())[3]
    broken.write_bytes(broken.read_bytes()[:300])  # a JPEG cut short
    with caplog.at_level(logging.WARNING):
        result = _predict(pack_dir, data, tmp_path)
    assert result.check.ok
    assert "could not be decoded and get the training prior" in caplog.text and broken.name in caplog.text
    listed = pd.read_csv(result.folder / "undecodable_test.csv")
    assert listed["id"].tolist() == [broken.name] and "truncated" in listed["reason"].iloc[0].lower()
    submission = pd.read_csv(result.submission).set_index("image_id")["label"]
    pack = load_pack(pack_dir)
    assert submission[broken.name] == pack.vocab["label"][int(np.argmax(pack.shares["label"]))]
    assert len(submission) == N_TEST


def test_a_member_refuses_images_not_prepared_like_its_training_images(paddy_run, pack_dir):
    """Raw files, or entries cached at another size, would be resized differently from what the run predicted."""
    pack, data_dir = load_pack(pack_dir), paddy_run[1].data_dir
    raw = load_items(pack.spec(), data_dir).test
    larger = prepare_submission_test(replace(pack, cache=replace(pack.cache, cover=(48, 48))), data_dir).items.test
    for test in (raw, larger):
        with pytest.raises(kk.DataError, match=r"made like this member's training images \(<hash>\.32x32\.npy\)"):
            member_probabilities(pack.members[0], test, 0)


XRAY_RECIPE = """
valid_pct = 0.25
split = "random"
tta = 1
num_workers = 0

[defaults]
size = 32
epochs = 1
batch_size = 8

[[members]]
name = "tiny"
arch = "resnet10t"
aug = "flip"
"""


def test_dicom_pack_reproduces_thresholds_and_the_prior_of_an_undecodable_file(tmp_path):
    """X-rays: DICOMs through the same 16-bit cache, one input channel, tuned multi-label thresholds, and a test file
    whose pixels cannot be decoded predicted with the training prior, as the run did."""
    from pydicom import dcmread
    from pydicom.uid import ExplicitVRLittleEndian

    xray = kk.get_competition("xray")
    sample = kk.write_sample(xray, tmp_path / "data", seed=5, n_train=40, n_test=12)
    broken = next(p for p in sorted((sample.data_dir / "test").rglob("*.dcm"))
                  if dcmread(p).file_meta.TransferSyntaxUID == ExplicitVRLittleEndian)  # fmt: skip
    broken.write_bytes(broken.read_bytes()[:-1000])  # its header (and UID) still reads, its pixels do not
    (tmp_path / "tiny.toml").write_text(XRAY_RECIPE)
    run = kk.run(xray, tmp_path / "tiny.toml", data=sample.data_dir, runs_dir=tmp_path / "runs",
                 submissions_dir=tmp_path / "subs")  # fmt: skip
    assert run.ensemble.thresholds is not None and len(run.ensemble.test.ids) == 12
    pack = kk.export_pack(run.folder, tmp_path / "pack")
    saved = json.loads((tmp_path / "pack" / PACK_FILE).read_text())
    assert saved["images"] == {"kind": "dicom", "cover": [32, 32], "channels": 1, "frames": "first"}
    assert saved["thresholds"]["thresholds"] == run.ensemble.thresholds.to_dict()["thresholds"]
    assert json.loads((tmp_path / "pack" / "tiny.json").read_text())["channels"] == 1
    result = _predict(pack, sample.data_dir, tmp_path)
    _same_as_run(result, run)
    undecodable = pd.read_csv(result.folder / "undecodable_test.csv", dtype=str)
    assert undecodable["id"].tolist() == pd.read_csv(run.folder / "undecodable_test.csv", dtype=str)["id"].tolist()
    assert len(undecodable) == 1


# --- the time budget ---


def _costs(plain: float, augmented: float):
    """`measure` replaced by fixed costs: every member `plain` / `augmented` seconds per image, loading for free."""

    def measure(member, test, tta, num_workers=None):
        return MemberCost(member.name, member.weight, len(member.parts), 0.0, plain, augmented)

    return measure


def _ensemble_probabilities(result: PredictionResult) -> np.ndarray:
    return kk.Probabilities.load(result.folder / "ensemble", "test").tasks["label"]


def test_time_budget_plan_is_followed_printed_and_recorded(paddy_run, pack_dir, tmp_path, monkeypatch, caplog):
    sample = paddy_run[1]
    pack = load_pack(pack_dir)
    test = prepare_submission_test(pack, sample.data_dir).items.test  # cache entries made as the run made them
    monkeypatch.setattr(budget, "measure", _costs(plain=1.0, augmented=1.0))
    hours = lambda seconds: seconds / 3600  # noqa: E731
    two_members_no_tta = 3 * N_TEST * 1.0  # three models (one + two folds), the plain pass only
    with caplog.at_level(logging.INFO):
        fits = _predict(pack, sample.data_dir, tmp_path, time_budget=hours(two_members_no_tta + 20))
    assert (fits.plan.tta, fits.plan.members, fits.plan.dropped) == (0, ["crop", "folded"], [])
    assert "Plan: TTA 1 -> 0 passes; 2 member(s), TTA 0" in caplog.text
    assert json.loads((fits.folder / "run.json").read_text())["metrics"]["plan"]["tta"] == 0
    planned = kk.predict_files(pack, test["source"].tolist(), tta=0).probabilities  # what the plan says: no TTA
    np.testing.assert_allclose(_ensemble_probabilities(fits), planned.tasks["label"], atol=1e-6)

    lightest = min(pack.members, key=lambda m: (m.weight, -len(m.parts)))  # of equal weights, the slowest
    [kept] = [m for m in pack.members if m is not lightest]
    one = _predict(pack, sample.data_dir, tmp_path, time_budget=hours(len(kept.parts) * N_TEST + 10))
    assert (one.plan.members, one.plan.dropped, one.plan.tta) == ([kept.name], [lightest.name], 0)
    assert json.loads((one.folder / "ensemble" / "ensemble.json").read_text())["weights"] == {kept.name: kept.weight}
    assert f"member(s) {lightest.name} left out to fit the time budget" in one.notes
    alone = member_probabilities(kept, test, 0)  # the kept member alone, without TTA
    np.testing.assert_allclose(_ensemble_probabilities(one), alone.tasks["label"], atol=1e-6)

    subs = tmp_path / "subs" / "paddy"
    before = sorted(subs.iterdir())
    with pytest.raises(BudgetError, match="stopping now rather than at the limit"):
        _predict(pack, sample.data_dir, tmp_path, time_budget=hours(N_TEST * 0.5))
    assert sorted(subs.iterdir()) == before  # stopped before predicting: no submission
    [failed] = [p for p in (tmp_path / "runs" / "paddy").glob("*/") if p not in {fits.folder, one.folder}]
    assert json.loads((failed / "run.json").read_text())["status"] == "failed in plan"


def test_budget_measures_each_member_on_the_first_batches(paddy_run, pack_dir, monkeypatch):
    sample = paddy_run[1]
    pack = load_pack(pack_dir)
    test = prepare_submission_test(pack, sample.data_dir).items.test
    monkeypatch.setattr(batches, "_store", None)  # no image in memory yet, as in a fresh notebook
    cost = budget.measure(pack.members[1], test, tta=1, num_workers=0)
    assert (cost.name, cost.parts, cost.weight) == ("folded", 2, pack.members[1].weight)
    assert cost.plain > 0 and cost.augmented > 0 and cost.load > 0 and cost.resize > 0
    again = budget.measure(pack.members[1], test, tta=1, num_workers=0)  # a member of the same size after it
    assert again.resize < cost.resize / 5  # its images are in memory already, as they will be when predicting


# --- the command line ---


def test_cli_exports_and_predicts_a_submission(paddy_run, tmp_path, paddy):
    run, sample = paddy_run
    runner = CliRunner()
    exported = runner.invoke(app, ["export", str(run.folder), str(tmp_path / "pack")], env={"COLUMNS": "200"})
    assert exported.exit_code == 0, exported.output
    assert "crop (resnet10t): weight" in exported.output and "folded (resnet10t)" in exported.output
    assert "2 model(s)" in exported.output and "TTA 1" in exported.output
    again = runner.invoke(app, ["export", str(run.folder), str(tmp_path / "pack")])
    assert again.exit_code == 2 and "not an empty folder" in again.output
    args = ["predict", str(tmp_path / "pack"), "--data", str(sample.data_dir), "--runs", str(tmp_path / "runs"),
            "--submissions", str(tmp_path / "subs"), "--time-budget", "2"]  # fmt: skip
    predicted = runner.invoke(app, args, env={"COLUMNS": "200"})
    assert predicted.exit_code == 0, predicted.output
    assert "Plan: everything fits; 2 member(s), TTA 1" in predicted.output
    [written] = (tmp_path / "subs" / "paddy").glob("*_predict-tiny.csv")
    assert f"Submission: {written}" in " ".join(predicted.output.split())
    pd.testing.assert_frame_equal(pd.read_csv(written), pd.read_csv(run.submission))


def test_export_push_uploads_the_pack_as_a_private_dataset(paddy_run, tmp_path, monkeypatch):
    run = paddy_run[0]
    with kaggle_stand_in(tmp_path, monkeypatch, username="kk-user", key="kk-secret-a1b2c3") as kaggle:
        result = CliRunner().invoke(app, ["export", str(run.folder), "pack", "--push"], env={"COLUMNS": "200"})
        assert result.exit_code == 0, result.output
    [(ref, dataset)] = kaggle.datasets.items()
    assert ref == f"kk-user/kagglekit-paddy-{run.folder.name.replace('_', '-')}"
    assert f"Created private dataset: https://www.kaggle.com/datasets/{ref}" in result.output
    assert dataset.request["isPrivate"] is True
    packed = {p.name: p.read_bytes() for p in (tmp_path / "pack").iterdir() if p.name != "dataset-metadata.json"}
    assert dataset.files == packed  # every file, flat, byte for byte
    assert "kk-secret-a1b2c3" not in (tmp_path / "pack" / "dataset-metadata.json").read_text()


def test_cli_predicts_image_files_as_the_submission_does(paddy_run, pack_dir, tmp_path):
    run, sample = paddy_run
    paths = load_items(load_pack(pack_dir).spec(), sample.data_dir).test["path"].tolist()  # the run's order
    out = tmp_path / "probs.csv"
    result = CliRunner().invoke(app, ["predict", str(pack_dir), *paths, "--output", str(out)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    frame = pd.read_csv(out)
    expected = kk.Probabilities.load(run.folder / "ensemble", "test")
    assert frame["id"].tolist() == expected.ids
    np.testing.assert_allclose(
        frame[[f"label:{c}" for c in expected.vocab["label"]]], expected.tasks["label"], atol=1e-5
    )


def test_cli_names_a_broken_image_predicts_the_others_and_fails(pack_dir, paddy_run, tmp_path):
    sample = paddy_run[1]
    folder = tmp_path / "images"
    folder.mkdir()
    for path in sorted((sample.data_dir / "test_images").iterdir())[:2]:
        shutil.copy(path, folder / path.name)
    (folder / "broken.jpg").write_bytes(b"")  # a 0-byte file
    out = tmp_path / "probs.csv"
    result = CliRunner().invoke(app, ["predict", str(pack_dir), str(folder), "--output", str(out)],
                                env={"COLUMNS": "200"})  # fmt: skip
    assert result.exit_code == 1
    text = " ".join(result.output.split())
    assert f"✗ {folder / 'broken.jpg'}: not a readable image: cannot identify image file" in text
    assert "1 of 3 image(s) could not be read and were not predicted" in text
    assert pd.read_csv(out)["id"].tolist() == sorted(p.name for p in folder.iterdir() if p.name != "broken.jpg")


# --- a faked Kaggle rerun of the inference notebook ---


def _hidden_test_set(public: Path, dest: Path, extra: int) -> pd.DataFrame:
    """The competition as a rerun sees it: the public test images first, then `extra` images never seen, all in the
    hidden sample submission."""
    shutil.copytree(public, dest)
    sample = pd.read_csv(dest / "sample_submission.csv", dtype=str, keep_default_na=False)
    train = sorted((dest / "train_images").rglob("*.jpg"))[:extra]
    new = [f"3{n:05d}.jpg" for n in range(extra)]
    for source, name in zip(train, new, strict=True):
        shutil.copy(source, dest / "test_images" / name)
    hidden = pd.concat([sample, pd.DataFrame({"image_id": new, "label": ""})], ignore_index=True)
    hidden.to_csv(dest / "sample_submission.csv", index=False)
    return hidden


def test_inference_notebook_predicts_a_larger_hidden_test_set_offline(
    paddy_run, pack_dir, tmp_path, monkeypatch, paddy
):
    run = paddy_run[0]
    inputs = tmp_path / "input"
    hidden = _hidden_test_set(paddy_run[1].data_dir, inputs / "competitions" / paddy.slug, extra=5)  # newer layout
    shutil.copytree(pack_dir, inputs / "datasets" / "kk-user" / "my-pack")  # datasets/<owner>/<slug>
    wheel = kaggle_packs.build_kagglekit_wheel(kaggle_packs.source_checkout(), tmp_path / "wheel")
    (inputs / "kagglekit-wheels").mkdir()  # the older layout: /kaggle/input/<slug>
    shutil.copy(wheel, inputs / "kagglekit-wheels")
    parameters = {"KAGGLE_IS_COMPETITION_RERUN": "True", "KAGGLEKIT_PACK_DATASET": "kk-user/my-pack"}
    printed, working, _ = run_offline(INFERENCE_NOTEBOOK, tmp_path, monkeypatch, parameters, timeout=300)
    assert "Competition rerun: the hidden test set" in printed
    assert re.search(r"Time budget [78]\.\d\d h left for 21 test images", printed)  # Kaggle's default; the plan
    submission = working / "submission.csv"
    assert check_submission(submission, paddy, inputs / "competitions" / paddy.slug / "sample_submission.csv").ok
    predicted = pd.read_csv(submission, dtype=str)
    assert predicted["image_id"].tolist() == hidden["image_id"].tolist()  # every hidden id, in its order
    public = pd.read_csv(run.submission, dtype=str)
    pd.testing.assert_frame_equal(predicted.head(len(public)), public)  # the run's own submission on shared images
