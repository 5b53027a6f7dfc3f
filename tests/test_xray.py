"""The DICOM x-ray plug-ins: UNIFESP body parts (files keyed by their header's SOPInstanceUID in nested study
and series folders, multi-label, F1) and SIIM pneumothorax in fastai's SIIM_SMALL layout. Their samples are
real DICOMs in mixed encodings; they load, cache at full depth, and survive corrupt files end to end."""

from __future__ import annotations

import logging
import re
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from pydicom import dcmread
from pydicom.uid import ExplicitVRLittleEndian, JPEGBaseline8Bit, generate_uid
from sklearn.metrics import f1_score

from kagglekit import get_competition, list_competitions, load_items, load_recipe, vocabularies, write_sample
from kagglekit.competition import DicomIndex
from kagglekit.data.cache import load_cached
from kagglekit.data.dicom import read_dicom
from kagglekit.data.images import prepare_images
from kagglekit.samples import SampleData
from kagglekit.submission.checks import check_submission
from kagglekit.submission.metrics import f1_samples, get_metric

CLASSES = [str(i) for i in range(22)]
TINY_RECIPE = """
valid_pct = 0.25
split = "random"
tta = 0
num_workers = 0
[defaults]
size = 32
epochs = 1
batch_size = 8
[[members]]
name = "tiny"
arch = "resnet10t"
"""


@pytest.fixture(scope="module")
def xray():
    return get_competition("xray")


@pytest.fixture(scope="module")
def siim():
    return get_competition("siim")


@pytest.fixture(scope="module")
def xray_sample(tmp_path_factory, xray) -> SampleData:
    return write_sample(xray, tmp_path_factory.mktemp("xray-sample"), seed=5, n_train=40, n_test=12)


@pytest.fixture(scope="module")
def siim_sample(tmp_path_factory, siim) -> SampleData:
    return write_sample(siim, tmp_path_factory.mktemp("siim-sample"), seed=5, n_train=40, n_test=12)


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _dicoms(folder: Path) -> list[Path]:
    return sorted(folder.rglob("*.dcm"))


# --- registration, metric, recipes ----------------------------------------------------------------------


def test_both_plugins_are_registered_with_their_formats(xray, siim):
    assert {"xray", "siim"} <= set(list_competitions())
    assert get_competition("unifesp-x-ray-body-part-classifier").name == "xray"
    target = xray.tasks["Target"]
    assert (target.kind, list(target.classes), xray.metric) == ("multi", CLASSES, "f1_samples")
    assert (xray.submission.kind, xray.submission.column, xray.images) == ("tags", "Target", "dicom")
    assert xray.train_image == DicomIndex("train") and xray.test_images == DicomIndex("test")
    assert (siim.train_csv, siim.id_column, siim.train_image, siim.images) == ("labels.csv", "file", "{file}", "dicom")
    assert siim.tasks["label"].classes == ("No Pneumothorax", "Pneumothorax") and siim.submission.kind == "label"


@pytest.mark.parametrize("name", ["xray", "siim"])
def test_recipes_parse_and_the_sample_recipe_is_tiny(name):
    competition = get_competition(name)
    sample, gpu = (load_recipe(competition.recipe_path(r)) for r in ("sample", "gpu"))
    assert len(sample.members) == 2 and all(not m.pretrained and m.size == 64 for m in sample.members)
    assert all(m.pretrained for m in gpu.members)


def test_f1_samples_is_f1_per_image_averaged():
    truth = [{"3"}, {"3", "4"}, {"9"}]
    pred = [{"3"}, {"4"}, {"21"}]
    assert f1_samples(truth, pred) == pytest.approx((1 + 2 / 3 + 0) / 3)
    binary = np.array([[1, 0, 0, 0], [1, 1, 0, 0], [0, 0, 1, 0]]), np.array([[1, 0, 0, 0], [0, 1, 0, 0], [0, 0, 0, 1]])
    assert f1_samples(truth, pred) == pytest.approx(f1_score(*binary, average="samples"))
    assert get_metric("f1_samples").greater_is_better


# --- the samples' layouts and files -----------------------------------------------------------------------


def test_xray_sample_nests_files_by_study_and_series_uid(xray_sample):
    data = xray_sample.data_dir
    assert sorted(p.name for p in data.iterdir()) == ["sample_submission.csv", "test", "train", "train.csv"]
    train = _read(data / "train.csv")
    assert list(train.columns) == ["SOPInstanceUID", "Target"]
    assert train["Target"].str.fullmatch(r"\d+( \d+)?").all() and train["Target"].str.contains(" ").any()
    assert {c for cell in train["Target"] for c in cell.split()} <= set(CLASSES)
    sample = _read(data / "sample_submission.csv")
    assert list(sample.columns) == ["SOPInstanceUID", "Target"] and (sample["Target"] == "").all()
    assert sample["SOPInstanceUID"].tolist() == _read(xray_sample.answers)["SOPInstanceUID"].tolist()
    assert not xray_sample.answers.is_relative_to(data)
    for folder, ids in (("train", train["SOPInstanceUID"]), ("test", sample["SOPInstanceUID"])):
        seen = set()
        for path in _dicoms(data / folder):
            study, series, name = path.relative_to(data / folder).parts
            ds = dcmread(path, stop_before_pixels=True)
            assert (study, series, name) == (ds.StudyInstanceUID, ds.SeriesInstanceUID, f"{ds.SOPInstanceUID}-c.dcm")
            seen.add(ds.SOPInstanceUID)
        assert seen == set(ids)


def test_siim_sample_has_fastai_label_folders_and_a_test_folder(siim_sample):
    data = siim_sample.data_dir
    assert sorted(p.name for p in data.iterdir()) == ["labels.csv", "sample_submission.csv", "test", "train"]
    assert sorted(p.name for p in (data / "train").iterdir()) == ["No Pneumothorax", "Pneumothorax"]
    labels = _read(data / "labels.csv")
    assert list(labels.columns) == ["file", "label"]
    for row in labels.itertuples():
        assert re.fullmatch(rf"train/{row.label}/\d{{6}}\.dcm", row.file) and (data / row.file).is_file()
    sample = _read(data / "sample_submission.csv")
    assert list(sample.columns) == ["file", "label"] and (sample["label"] == "").all()
    assert sorted(sample["file"]) == sorted(str(p.relative_to(data)) for p in _dicoms(data / "test"))


@pytest.mark.parametrize("sample_name", ["xray_sample", "siim_sample"])
def test_samples_are_real_dicoms_in_mixed_encodings(request, sample_name):
    headers = [dcmread(p) for p in _dicoms(request.getfixturevalue(sample_name).data_dir)]
    assert {ds.PhotometricInterpretation for ds in headers} == {"MONOCHROME1", "MONOCHROME2"}
    assert any(ds.BitsStored == 12 and ds.BitsAllocated == 16 for ds in headers)
    assert any((ds.RescaleSlope, ds.RescaleIntercept) != (1, 0) for ds in headers)
    syntaxes = {ds.file_meta.TransferSyntaxUID for ds in headers}
    assert ExplicitVRLittleEndian in syntaxes and any(s.is_compressed for s in syntaxes)
    for ds in headers:
        assert ds.pixel_array.shape == (ds.Rows, ds.Columns)
    if sample_name == "siim_sample":  # the real SIIM files: 8-bit JPEG baseline
        assert all(ds.BitsStored == 8 for ds in headers if ds.file_meta.TransferSyntaxUID == JPEGBaseline8Bit)
        assert JPEGBaseline8Bit in syntaxes


def test_monochrome1_files_store_the_negative_of_the_same_anatomy(xray_sample):
    """A reader that ignores MONOCHROME1 sees an inverted film; read_dicom shows it like a MONOCHROME2 one."""
    raw_means, shown_means = {"MONOCHROME1": [], "MONOCHROME2": []}, {"MONOCHROME1": [], "MONOCHROME2": []}
    for path in _dicoms(xray_sample.data_dir):
        ds = dcmread(path)
        raw, shown = ds.pixel_array.astype(float), read_dicom(path).astype(float)
        correlation = np.corrcoef(raw.ravel(), shown.ravel())[0, 1]
        assert correlation < -0.999 if ds.PhotometricInterpretation == "MONOCHROME1" else correlation > 0.999
        raw_means[ds.PhotometricInterpretation].append(raw.mean() / 4095)
        shown_means[ds.PhotometricInterpretation].append(shown.mean() / 65535)
    assert np.mean(raw_means["MONOCHROME1"]) > 0.5 > np.mean(raw_means["MONOCHROME2"])
    assert np.mean(shown_means["MONOCHROME1"]) == pytest.approx(np.mean(shown_means["MONOCHROME2"]), abs=0.1)


# --- loading, caching, checking ---------------------------------------------------------------------------


def test_load_items_finds_files_by_their_header_even_when_renamed(xray, xray_sample, tmp_path, caplog):
    data = tmp_path / "data"
    shutil.copytree(xray_sample.data_dir, data)
    moved = _dicoms(data / "train")[0]
    uid = dcmread(moved, stop_before_pixels=True).SOPInstanceUID
    renamed = data / "train" / "elsewhere" / "deeper" / "renamed.dcm"
    renamed.parent.mkdir(parents=True)
    moved.rename(renamed)
    with caplog.at_level(logging.WARNING):
        items = load_items(xray, data)
    assert "renamed.dcm holds " + uid in caplog.text and "disagree with their SOPInstanceUID" in caplog.text
    assert len(items.skipped) == 0 and len(items.train) == 40
    assert items.train.set_index("id").loc[uid, "path"] == str(renamed)
    assert items.train["path"].map(lambda p: Path(p).is_file()).all()
    assert items.test["id"].tolist() == items.sample_submission["SOPInstanceUID"].tolist()
    assert vocabularies(xray, items)["Target"] == CLASSES


def _rewrite_uid(path: Path, uid: str) -> None:
    """What a converter that rewrites UIDs does: the header gets a new SOPInstanceUID, the file keeps its name."""
    ds = dcmread(path)
    ds.SOPInstanceUID = ds.file_meta.MediaStorageSOPInstanceUID = uid
    ds.save_as(path)


def test_ids_match_the_uid_in_the_header_or_in_the_file_name(xray, xray_sample, tmp_path, caplog):
    data = tmp_path / "data"
    shutil.copytree(xray_sample.data_dir, data)
    train, test = _dicoms(data / "train"), _dicoms(data / "test")
    for path in (train[0], test[0]):  # named <SOPInstanceUID>-c.dcm, its header now says otherwise
        _rewrite_uid(path, generate_uid())
    with caplog.at_level(logging.WARNING):
        items = load_items(xray, data)
    assert len(items.skipped) == 0 and len(items.train) == 40 and len(items.test) == 12
    by_id = dict(zip(items.train["id"], items.train["path"], strict=True)) | dict(
        zip(items.test["id"], items.test["path"], strict=True))  # fmt: skip
    assert by_id[train[0].name.removesuffix("-c.dcm")] == str(train[0])
    assert by_id[test[0].name.removesuffix("-c.dcm")] == str(test[0])
    assert caplog.text.count("1 DICOM file name(s) disagree with their SOPInstanceUID (ids are matched by either)") == 2


def test_a_header_and_a_file_name_that_name_an_id_for_two_files_is_reported(xray, xray_sample, tmp_path, caplog):
    data = tmp_path / "data"
    shutil.copytree(xray_sample.data_dir, data)
    first, second = _dicoms(data / "test")[:2]
    wanted = first.name.removesuffix("-c.dcm")
    _rewrite_uid(first, generate_uid())
    _rewrite_uid(second, wanted)  # the header of another file now names the first file's id
    with caplog.at_level(logging.WARNING):
        items = load_items(xray, data)
    paths = items.test.set_index("id")["path"]
    assert paths[wanted] == str(second), "the header wins over the file name"
    assert f"{wanted} is in the header of {second.name} and names {first.name} (using {second.name})" in caplog.text
    assert f"{second.name} is matched by both" in caplog.text  # its own name's id claims it too


def test_siim_items_are_keyed_by_path(siim, siim_sample):
    items = load_items(siim, siim_sample.data_dir)
    assert len(items.skipped) == 0
    assert all(path.endswith(row_id) for row_id, path in zip(items.train["id"], items.train["path"], strict=True))
    assert items.test["id"].str.fullmatch(r"test/\d{6}\.dcm").all()


@pytest.mark.parametrize("name", ["xray", "siim"])
def test_prepare_images_caches_every_file_at_full_depth(request, name, tmp_path):
    competition = get_competition(name)
    items = load_items(competition, request.getfixturevalue(f"{name}_sample").data_dir)
    prepared = prepare_images(competition, items, tmp_path / "cache", workers=1)
    assert len(prepared.undecodable_test) == 0 and len(prepared.items.skipped) == 0
    sources = {Path(p): dcmread(p, stop_before_pixels=True).BitsStored for p in items.train["path"]}
    for source, png in zip(items.train["path"], prepared.items.train["path"], strict=True):
        assert Path(png).parent == tmp_path / "cache"
        cached = load_cached(Path(png))
        assert cached.dtype == np.uint16
        if sources[Path(source)] == 12:  # 8-bit JPEG baseline files have at most 256 levels to keep
            assert len(np.unique(cached)) > 256


def test_check_names_the_lines_with_an_unknown_class_or_an_empty_target(xray, xray_sample, tmp_path):
    sample_path = xray_sample.data_dir / "sample_submission.csv"
    frame = _read(sample_path).assign(Target="3")
    frame.loc[1, "Target"] = "3 4"
    good = tmp_path / "good.csv"
    frame.to_csv(good, index=False)
    assert check_submission(good, xray, sample_path).ok
    frame.loc[0, "Target"], frame.loc[2, "Target"] = "3 22", ""
    bad = tmp_path / "bad.csv"
    frame.to_csv(bad, index=False)
    report = check_submission(bad, xray, sample_path)
    assert any("outside the 22 known classes (22) at line 2" in w for w in report.warnings), report.warnings
    assert any("empty or NaN 'Target' at line 4" in e for e in report.errors), report.errors


# --- end to end with corrupt files ------------------------------------------------------------------------


def _truncate_pixels(folder: Path) -> tuple[str, Path]:
    """Cut the end off an uncompressed file's pixel data; its header (and UID) still reads."""
    path = next(p for p in _dicoms(folder) if dcmread(p).file_meta.TransferSyntaxUID == ExplicitVRLittleEndian)
    uid = dcmread(path, stop_before_pixels=True).SOPInstanceUID
    path.write_bytes(path.read_bytes()[:-1000])
    return uid, path


@pytest.mark.slow
def test_corrupt_dicoms_are_skipped_in_training_and_get_the_prior_in_the_submission(
    xray, xray_sample, tmp_path, caplog
):
    from kagglekit.pipeline import job as pipeline

    data = tmp_path / "data"
    shutil.copytree(xray_sample.data_dir, data)
    bad_train, _ = _truncate_pixels(data / "train")
    bad_test, _ = _truncate_pixels(data / "test")
    (tmp_path / "tiny.toml").write_text(TINY_RECIPE)
    with caplog.at_level(logging.WARNING):
        result = pipeline.run(
            xray, recipe=tmp_path / "tiny.toml", data=data, answers=xray_sample.answers,
            runs_dir=tmp_path / "runs", submissions_dir=tmp_path / "subs",
        )  # fmt: skip
    assert result.check.ok and result.test_score is not None
    assert "could not be decoded and get the training prior" in caplog.text and bad_test in caplog.text
    undecodable = _read(result.folder / "undecodable_test.csv")
    assert undecodable["id"].tolist() == [bad_test] and "less than expected" in undecodable["reason"].iloc[0]
    skipped = _read(result.folder / "skipped_items.csv")
    assert skipped["id"].tolist() == [bad_train] and "less than expected" in skipped["reason"].iloc[0]
    submission = _read(result.submission).set_index("SOPInstanceUID")
    assert len(submission) == 12 and submission.loc[bad_test, "Target"] != ""
