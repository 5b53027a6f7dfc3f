import pandas as pd
import pytest

from kagglekit.data.splits import load_splits, make_folds, make_splits, save_splits
from kagglekit.errors import DataError


@pytest.fixture
def table():
    labels = ["a"] * 60 + ["b"] * 30 + ["c"] * 9 + ["rare"]
    return pd.DataFrame({"id": [f"{i}.jpg" for i in range(100)], "label": labels})


def test_seeded_split_is_deterministic_and_sized(table):
    first = make_splits(table["id"], valid_pct=0.2, seed=7)
    again = make_splits(table["id"], valid_pct=0.2, seed=7)
    other = make_splits(table["id"], valid_pct=0.2, seed=8)
    pd.testing.assert_frame_equal(first, again)
    assert first["is_valid"].sum() == 20
    assert not first["is_valid"].equals(other["is_valid"])


def test_stratified_split_keeps_class_shares_and_survives_a_singleton_class(table):
    splits = make_splits(table["id"], valid_pct=0.2, seed=0, stratify=table["label"])
    valid = table.loc[splits["is_valid"].to_numpy(), "label"].value_counts()
    assert valid["a"] == 12 and valid["b"] == 6


def test_splits_persist_and_refuse_other_rows(table, tmp_path):
    splits = make_splits(table["id"], seed=3)
    path = save_splits(splits, tmp_path / "splits.csv")
    pd.testing.assert_frame_equal(load_splits(path, table["id"]), splits)
    with pytest.raises(DataError, match="different training rows"):
        load_splits(path, table["id"].iloc[:50])


def test_kfold_assigns_every_row_to_exactly_one_fold(table):
    folds = make_folds(table["id"], k=5, seed=0, stratify=table["label"])
    assert sorted(folds["fold"].unique()) == [0, 1, 2, 3, 4]
    assert folds["fold"].value_counts().tolist() == [20] * 5
    assert make_folds(table["id"], k=5, seed=0, stratify=table["label"]).equals(folds)


def test_bad_split_arguments():
    with pytest.raises(ValueError):
        make_splits(pd.Series(["a", "b"]), valid_pct=1.5)
    with pytest.raises(ValueError):
        make_folds(pd.Series(["a", "b"]), k=1)
