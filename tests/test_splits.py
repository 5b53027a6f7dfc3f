import logging
import math

import numpy as np
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


def _long_tail(classes: int = 120, seed: int = 0) -> pd.DataFrame:
    """The dog-breeds layout on a small budget: 120 classes of 3-5 rows each (about 490 rows)."""
    rng = np.random.default_rng(seed)
    labels = np.repeat([f"breed_{i:03d}" for i in range(classes)], rng.integers(3, 6, classes))
    return pd.DataFrame({"id": [f"{i:032x}" for i in range(len(labels))], "breed": rng.permutation(labels)})


def test_more_classes_than_validation_rows_still_splits_stratified_as_far_as_counts_allow(caplog):
    table = _long_tail()
    with caplog.at_level(logging.INFO):
        splits = make_splits(table["id"], valid_pct=0.2, seed=42, stratify=table["breed"])
    n_valid = math.ceil(len(table) * 0.2)
    assert splits["is_valid"].sum() == n_valid < table["breed"].nunique()
    valid = table.loc[splits["is_valid"].to_numpy(), "breed"]
    assert valid.value_counts().max() == 1, "the kept strata put one row of each of the commonest classes aside"
    train = table.loc[~splits["is_valid"].to_numpy(), "breed"]
    assert set(train) == set(table["breed"]), "every class keeps training rows"
    assert "Stratified the split by hand: 120 classes outnumber what a stratified split can hold (98 validation" in (
        caplog.text)  # fmt: skip


@pytest.mark.parametrize("k", [3, 5, 6])
def test_folds_of_a_long_tail_spread_every_class_over_the_folds(k):
    table = _long_tail(seed=k)
    folds = make_folds(table["id"], k=k, seed=0, stratify=table["breed"])
    sizes = folds["fold"].value_counts()
    assert sorted(sizes.index) == list(range(k)) and sizes.max() - sizes.min() <= 1
    per_fold = pd.crosstab(table["breed"], folds["fold"])
    assert (per_fold.max(axis=1) - per_fold.min(axis=1)).max() <= 1, "each class as even over the folds as it can be"


def test_too_few_rows_to_split_is_a_one_line_data_error():
    with pytest.raises(DataError, match=r"1 usable training row\(s\) with valid_pct 0.2 leave none to train on"):
        make_splits(pd.Series(["only"]), stratify=pd.Series(["a"]))
    with pytest.raises(DataError, match="5 folds need at least 5 training rows; there are 3"):
        make_folds(pd.Series(["a", "b", "c"]), k=5, stratify=pd.Series(["x", "y", "y"]))
    two = make_splits(pd.Series(["a", "b"]), stratify=pd.Series(["x", "y"]))  # one class each: split at random
    assert two["is_valid"].tolist().count(True) == 1


def test_member_splits_of_a_long_tailed_recipe(tmp_path):
    from kagglekit import get_competition
    from kagglekit.data.splits import member_splits
    from kagglekit.recipe import parse_recipe

    dogs = get_competition("dogs")
    table = _long_tail()
    recipe = parse_recipe({"members": [{"name": "h", "arch": "resnet10t"}, {"name": "f", "arch": "resnet10t",
                                                                           "folds": 5}]}, "r")  # fmt: skip
    for member in recipe.members:
        parts = member_splits(member, recipe, table, dogs, tmp_path)
        held_out = sum(mask.astype(int) for _, mask in parts)
        assert held_out.max() == 1 and held_out.sum() == (len(table) if member.folds else math.ceil(len(table) * 0.2))
