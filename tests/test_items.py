"""Finding the data and building the item table from the real Paddy Doctor layout."""

import shutil
from collections import Counter

import pandas as pd
import pytest
from conftest import SHARED
from PIL import Image

from kagglekit.data import load_items, locate_data, vocabularies
from kagglekit.errors import DataError
from kagglekit.samples import write_sample


def test_sample_has_the_real_layout(paddy_sample):
    data = paddy_sample.data_dir
    assert sorted(p.name for p in data.iterdir()) == [
        "sample_submission.csv",
        "test_images",
        "train.csv",
        "train_images",
    ]
    train = pd.read_csv(data / "train.csv", dtype=str)
    assert list(train.columns) == ["image_id", "label", "variety", "age"]
    assert train["image_id"].str.fullmatch(r"\d{6}\.jpg").all()
    assert train["age"].astype(int).between(45, 82).all()
    for row in train.itertuples():
        assert (data / "train_images" / row.label / row.image_id).is_file()
    sample = pd.read_csv(data / "sample_submission.csv", dtype=str, keep_default_na=False)
    assert list(sample.columns) == ["image_id", "label"] and (sample["label"] == "").all()
    assert sample["image_id"].iloc[0] == "200001.jpg"
    assert sorted(p.name for p in (data / "test_images").iterdir()) == sorted(sample["image_id"])
    answers = pd.read_csv(paddy_sample.answers, dtype=str)
    assert not paddy_sample.answers.is_relative_to(data), "answers must live outside the competition folder"
    assert answers["image_id"].tolist() == sample["image_id"].tolist()


def test_sample_images_are_portrait_photos_with_a_few_landscape(paddy, tmp_path):
    sample = write_sample(paddy, tmp_path, seed=0, n_train=150, n_test=50)
    sizes = Counter(Image.open(p).size for p in sample.data_dir.rglob("*.jpg"))
    assert set(sizes) == {(480, 640), (640, 480)}
    assert 0 < sizes[(640, 480)] < 0.1 * sizes.total()


def test_classes_are_imbalanced_and_not_encoded_in_names(paddy_sample):
    train = pd.read_csv(paddy_sample.data_dir / "train.csv", dtype=str)
    counts = train["label"].value_counts()
    assert counts.max() >= 3 * counts.min()
    ordered = train.sort_values("image_id")["label"]
    assert (ordered != ordered.shift()).sum() > len(train) / 2, "ids must not be grouped by class"


def test_load_items_resolves_every_path(paddy, paddy_sample):
    items = load_items(paddy, paddy_sample.data_dir)
    assert len(items.skipped) == 0
    assert items.train["path"].map(lambda p: Image.open(p).size in {(480, 640), (640, 480)}).all()
    assert items.test["id"].tolist() == items.sample_submission["image_id"].tolist()
    vocab = vocabularies(paddy, items)
    assert len(vocab["label"]) == 10 and vocab["label"] == sorted(vocab["label"])


def test_locate_data_finds_nested_downloads_and_explains_what_is_missing(paddy, paddy_sample, tmp_path):
    assert locate_data(paddy, paddy_sample.data_dir.parent) == paddy_sample.data_dir
    with pytest.raises(DataError, match="found no folder containing both train.csv and sample_submission.csv"):
        locate_data(paddy, tmp_path)
    with pytest.raises(DataError, match="--sample.*--data DIR.*kagglekit download paddy"):
        locate_data(paddy, None)


@pytest.mark.parametrize("layout", ["competitions/paddy-disease-classification", "paddy-disease-classification"])
def test_kaggle_notebook_input_layouts(paddy, paddy_sample, tmp_path, monkeypatch, layout):
    target = tmp_path / "input" / layout
    shutil.copytree(paddy_sample.data_dir, target)
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Interactive")
    monkeypatch.setenv("KAGGLEKIT_INPUT_ROOT", str(tmp_path / "input"))
    assert locate_data(paddy) == target


def test_missing_training_images_are_skipped_and_reported_missing_test_images_are_errors(paddy, paddy_sample, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(paddy_sample.data_dir, data)
    first = pd.read_csv(data / "train.csv", dtype=str).iloc[0]
    (data / "train_images" / first["label"] / first["image_id"]).unlink()
    items = load_items(paddy, data)
    assert items.skipped[["id", "reason", "line"]].values.tolist() == [[first["image_id"], "image file missing", 2]]
    (data / "test_images" / "200002.jpg").unlink()
    with pytest.raises(DataError, match=r"1 test image\(s\).*line 3 \(200002.jpg\)"):
        load_items(paddy, data)


def test_wrong_csv_columns_name_the_file(paddy, paddy_sample, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(paddy_sample.data_dir, data)
    pd.read_csv(data / "train.csv").rename(columns={"label": "disease"}).to_csv(data / "train.csv", index=False)
    with pytest.raises(DataError, match=r"train.csv: missing column\(s\) label"):
        load_items(paddy, data)


@pytest.mark.skipif(not (SHARED / "realdata" / "paddy").is_dir(), reason="../shared/realdata is not available")
def test_real_paddy_photos_load_through_the_pipeline(paddy, tmp_path):
    from kagglekit.recipe import Member
    from kagglekit.train import make_dataloaders, make_heads

    photos = sorted((SHARED / "realdata" / "paddy" / "train_images").rglob("*.jpg"))
    data = tmp_path / "real"
    rows = []
    for photo in photos:
        label = photo.parent.name
        (data / "train_images" / label).mkdir(parents=True, exist_ok=True)
        shutil.copy(photo, data / "train_images" / label / photo.name)
        rows.append({"image_id": photo.name, "label": label, "variety": "ADT45", "age": 45})
    pd.DataFrame(rows).to_csv(data / "train.csv", index=False)
    (data / "test_images").mkdir()
    shutil.copy(photos[0], data / "test_images" / "200001.jpg")
    pd.DataFrame({"image_id": ["200001.jpg"], "label": [""]}).to_csv(data / "sample_submission.csv", index=False)

    items = load_items(paddy, locate_data(paddy, data))
    member = Member(name="m", arch="resnet10t", size=(64, 48), batch_size=1)
    heads = make_heads(paddy, vocabularies(paddy, items), member)
    dls = make_dataloaders(items.train, pd.Series([False, True]), heads, member, num_workers=0)
    assert len({Image.open(p).size for p in photos}) == 2  # real photos differ in size (803x601, 797x597)...
    x, _ = dls.one_batch()
    assert tuple(x.shape) == (1, 3, 64, 48)  # ...and are resized to one shape
    batch = dls.valid.one_batch()[0]
    assert tuple(batch.shape) == (1, 3, 64, 48)
