"""Finding the data and building the item table from the real Paddy Doctor layout."""

import logging
import shutil
from collections import Counter
from pathlib import Path

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
    with pytest.raises(DataError, match=r"1 of the 24 test image\(s\).*line 3 \(200002.jpg\)"):
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


def _copy(sample_dir, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(sample_dir, data)
    return data, pd.read_csv(data / "train.csv", dtype=str, keep_default_na=False)


def test_whitespace_around_values_is_stripped_for_the_label_and_the_image_path(paddy, paddy_sample, tmp_path):
    data, table = _copy(paddy_sample.data_dir, tmp_path)
    table.loc[0, "label"] = f"  {table.loc[0, 'label']} "  # the folder is train_images/<label>/, unpadded
    table.loc[1, "image_id"] = f"{table.loc[1, 'image_id']}\t"
    table.rename(columns={"variety": " variety "}).to_csv(data / "train.csv", index=False)
    items = load_items(paddy, data)
    assert len(items.skipped) == 0 and len(items.train) == len(table)
    assert items.train["label"].iloc[0] == table.loc[0, "label"].strip()
    assert items.train["id"].iloc[1] == table.loc[1, "image_id"].strip()
    assert items.train["path"].map(lambda p: Path(p).is_file()).all()


def test_an_unknown_label_skips_its_row_and_names_it(paddy, paddy_sample, tmp_path, caplog):
    data, table = _copy(paddy_sample.data_dir, tmp_path)
    table.loc[3, "label"] = "Blast"  # a typo: not one of paddy's 10 classes
    table.to_csv(data / "train.csv", index=False)
    with caplog.at_level(logging.WARNING):
        items = load_items(paddy, data)
    assert items.skipped[["id", "reason", "line"]].values.tolist() == [
        [table.loc[3, "image_id"], "unknown label: Blast", 5]
    ]
    assert "Skipping 1 of" in caplog.text and "line 5" in caplog.text and table.loc[3, "image_id"] in caplog.text
    assert "Blast" not in vocabularies(paddy, items)["label"]
    items.train.loc[0, "label"] = "Blast"  # a table that bypassed load_items: the error names the id
    with pytest.raises(
        DataError, match=rf"outside the competition's 10 classes, first 'Blast' \(id {items.train['id'][0]}\)"
    ):
        vocabularies(paddy, items)


@pytest.mark.parametrize("file", ["train.csv", "sample_submission.csv"])
def test_a_table_with_a_header_and_no_rows_is_a_data_error(paddy, paddy_sample, tmp_path, file):
    data, _ = _copy(paddy_sample.data_dir, tmp_path)
    header = (data / file).read_text().splitlines()[0]
    (data / file).write_text(header + "\n")
    with pytest.raises(DataError, match=rf"{file}: a header but no .*Download it again"):
        load_items(paddy, data)
    (data / file).write_text("")
    with pytest.raises(DataError, match=rf"{file}: the file is empty"):
        load_items(paddy, data)


def test_missing_images_say_where_they_were_looked_for_and_where_they_are(paddy, paddy_sample, tmp_path):
    data, _ = _copy(paddy_sample.data_dir, tmp_path)
    (data / "test_images").rename(data / "test-images")
    with pytest.raises(DataError) as error:
        load_items(paddy, data)
    message = str(error.value)
    assert "24 of the 24 test image(s)" in message and "Searched test_images/" in message
    assert "(test_images/ missing); similarly named: test-images/" in message
    assert "files of those names are elsewhere (24 in test-images/)" in message
    (data / "test-images").rename(data / "test_images")
    (data / "train_images").rename(data / "extracted")
    (data / "nested").mkdir()
    (data / "extracted").rename(data / "nested" / "train_images")
    with pytest.raises(DataError, match=r"None of the \d+ rows .* is usable: \d+ image file missing") as error:
        load_items(paddy, data)
    assert "(train_images/ missing); similarly named: nested/train_images/" in str(error.value)


def test_data_that_is_a_file_or_holds_several_competition_folders_is_refused(paddy, paddy_sample, tmp_path, caplog):
    with pytest.raises(DataError, match=r"--data .*train.csv is a file; point --data at the folder holding"):
        locate_data(paddy, paddy_sample.data_dir / "train.csv")
    root = tmp_path / "downloads"
    shutil.copytree(paddy_sample.data_dir, root / "paddy-disease-classification")
    with caplog.at_level(logging.INFO):
        assert locate_data(paddy, root) == root / "paddy-disease-classification"
    assert f"Using the paddy data in {root / 'paddy-disease-classification'}" in caplog.text
    shutil.copytree(paddy_sample.data_dir, root / "older" / "paddy-copy")
    with pytest.raises(DataError, match=r"holds 2 folders with paddy's files \(.*older/paddy-copy.*\); give the one"):
        locate_data(paddy, root)
    shutil.copytree(paddy_sample.data_dir, root / "paddy-disease-classification" / "backup")  # a copy inside one
    assert locate_data(paddy, root / "paddy-disease-classification") == root / "paddy-disease-classification"
