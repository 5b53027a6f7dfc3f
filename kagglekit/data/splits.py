"""Validation splits, persisted with the run so every ensemble member is judged on the same rows."""

from __future__ import annotations

import logging
import math
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from kagglekit._io import write_csv
from kagglekit.competition import Competition
from kagglekit.errors import DataError
from kagglekit.recipe import Member, Recipe

log = logging.getLogger(__name__)


def _valid_quota(counts: pd.Series, n_valid: int, rng: np.random.Generator) -> pd.Series:
    """Validation rows per class: each class's share of `n_valid` rounded down, then one more for the classes with
    the largest remainders (ties in random order) until `n_valid` is reached; a class keeps at least one training
    row unless no other room is left."""
    exact = counts * n_valid / counts.sum()
    quota = np.minimum(np.floor(exact), counts - 1).clip(lower=0).astype(int)
    tie = pd.Series(rng.random(len(counts)), index=counts.index)
    for cap in (counts - 1, counts):  # first keep a training row of every class; give it up only if needed
        while quota.sum() < n_valid and (quota < cap).any():
            order = pd.DataFrame({"remainder": exact - quota, "tie": tie})[quota < cap]
            quota[order.sort_values(["remainder", "tie"], ascending=False).index[: n_valid - quota.sum()]] += 1
    return quota


def _stratified_valid(labels: pd.Series, n_valid: int, seed: int) -> np.ndarray:
    """Positions of `n_valid` validation rows, each class represented in proportion as far as its count allows
    (see `_valid_quota`); for data scikit-learn's stratified split refuses (classes of one row, or more classes
    than the validation or training part has rows)."""
    rng = np.random.default_rng(seed)
    quota = _valid_quota(labels.value_counts().sort_index(), n_valid, rng)
    positions = [rng.permutation(np.flatnonzero(labels.to_numpy() == label))[:n] for label, n in quota.items()]
    without = int((quota == 0).sum())
    log.info("Stratified the split by hand: %d classes outnumber what a stratified split can hold (%d validation "
             "rows; the smallest class has %d rows); %d classes have no validation row, each keeps a training row.",
             len(quota), n_valid, labels.value_counts().min(), without)  # fmt: skip
    return np.sort(np.concatenate(positions))


def make_splits(
    ids: pd.Series, valid_pct: float = 0.2, seed: int = 42, stratify: pd.Series | None = None
) -> pd.DataFrame:
    """A seeded hold-out split: `id, is_valid`, with ceil(valid_pct * rows) validation rows.

    `stratify` (labels aligned with `ids`) keeps each class's share in both parts: scikit-learn's stratified split
    where it applies, else (a long tail, a small dataset: more classes than a part has rows, classes of one row)
    each class gives its rounded share as far as its count allows (`_valid_quota`), said in the log. A split
    leaving no training row is a `DataError`.
    """
    if not 0 < valid_pct < 1:
        raise ValueError(f"valid_pct must be between 0 and 1, got {valid_pct}.")
    n_valid = math.ceil(len(ids) * valid_pct)
    if len(ids) - n_valid < 1:
        raise DataError(f"{len(ids)} usable training row(s) with valid_pct {valid_pct} leave none to train on "
                        f"({n_valid} held out for validation); add rows, or lower valid_pct.")  # fmt: skip
    positions = np.arange(len(ids))
    labels = None if stratify is None else stratify.reset_index(drop=True)
    counts = None if labels is None else labels.value_counts()
    if counts is None or (counts.min() >= 2 and len(counts) <= min(n_valid, len(ids) - n_valid)):
        _, valid = train_test_split(positions, test_size=n_valid, random_state=seed, stratify=labels)
    else:
        valid = _stratified_valid(labels, n_valid, seed)
    is_valid = np.zeros(len(ids), dtype=bool)
    is_valid[valid] = True
    return pd.DataFrame({"id": ids.to_numpy(), "is_valid": is_valid})


def make_folds(ids: pd.Series, k: int = 5, seed: int = 42, stratify: pd.Series | None = None) -> pd.DataFrame:
    """A seeded k-fold assignment: `id, fold` with fold in 0..k-1, folds differing in size by at most one.

    `stratify` spreads each class over the folds as evenly as its count allows (a class of fewer than k rows has
    each row in a different fold): scikit-learn's StratifiedKFold, or, when every class has fewer than k rows
    (which it refuses), rows dealt round-robin in class order. Fewer rows than folds is a `DataError`.
    """
    if k < 2:
        raise ValueError(f"k-fold needs k >= 2, got {k}.")
    if len(ids) < k:
        raise DataError(f"{k} folds need at least {k} training rows; there are {len(ids)}. Lower folds.")
    fold = np.zeros(len(ids), dtype=int)
    labels = None if stratify is None else stratify.reset_index(drop=True).to_numpy()
    if labels is None:
        splitter = KFold(k, shuffle=True, random_state=seed).split(ids)
    elif pd.Series(labels).value_counts().max() < k:
        log.info("Every class has fewer than %d rows: each class's rows go to different folds, dealt in turn.", k)
        order = np.random.default_rng(seed).permutation(len(ids))
        order = order[np.argsort(labels[order], kind="stable")]
        fold[order] = np.arange(len(ids)) % k
        return pd.DataFrame({"id": ids.to_numpy(), "fold": fold})
    else:
        with warnings.catch_warnings():  # "The least populated class has only n members": expected, handled
            warnings.simplefilter("ignore", UserWarning)
            splitter = list(StratifiedKFold(k, shuffle=True, random_state=seed).split(ids, labels))
    for number, (_, held_out) in enumerate(splitter):
        fold[held_out] = number
    return pd.DataFrame({"id": ids.to_numpy(), "fold": fold})


def valid_mask(split: pd.DataFrame | pd.Series | np.ndarray, train: pd.DataFrame) -> pd.Series:
    """Booleans aligned with the rows of `train`: true where a row is held out for validation.

    `split` is a `make_splits` frame (`id, is_valid`, matched by id) or booleans already aligned with `train`.
    """
    if isinstance(split, pd.DataFrame):
        by_id = split.set_index("id")["is_valid"]
        missing = ~train["id"].isin(by_id.index)
        if missing.any():
            raise DataError(f"the split has no row for id {train['id'][missing].iloc[0]!r}; make it from these rows.")
        return pd.Series(train["id"].map(by_id).astype(bool).to_numpy(), index=train.index)
    mask = np.asarray(split, dtype=bool)
    if mask.shape != (len(train),):
        raise DataError(f"is_valid has {mask.size} values for {len(train)} training rows.")
    return pd.Series(mask, index=train.index)


def save_splits(splits: pd.DataFrame, path: Path) -> Path:
    return write_csv(path, splits)


def load_splits(path: Path, ids: pd.Series) -> pd.DataFrame:
    """Read persisted splits and make sure they describe exactly the current training rows."""
    splits = pd.read_csv(path, dtype={"id": str})
    if set(splits["id"]) != set(ids):
        raise DataError(
            f"{path} was made for different training rows ({len(splits)} ids vs {len(ids)} now). "
            "Start a new run (or delete the file) to split the current data."
        )
    return splits


def _stratify(train: pd.DataFrame, recipe: Recipe, competition: Competition) -> pd.Series | None:
    target = competition.tasks[competition.target_task]
    if recipe.split != "stratified":
        return None
    if target.kind != "single":
        log.info("Stratified splits need a single-label target; %s is multi-label, splitting at random.", target.column)
        return None
    return train[target.column]


def member_splits(
    member: Member, recipe: Recipe, train: pd.DataFrame, competition: Competition, folder: Path
) -> list[tuple[str, pd.Series]]:
    """(part name, is_valid per training row) for each model the member trains, persisted in `folder`.

    The recipe's hold-out split (shared by default, so members are judged on the same rows), the member's
    own seeded split (split ensembles), or k folds (one part per fold; the parts' validation rows together
    cover every row once: out-of-fold predictions).
    """
    ids, stratify = train["id"], _stratify(train, recipe, competition)
    if member.folds:
        path = folder / f"folds-k{member.folds}-seed{recipe.seed}.csv"
        folds = load_splits(path, ids) if path.is_file() else make_folds(ids, member.folds, recipe.seed, stratify)
        save_splits(folds, path)
        fold = ids.map(folds.set_index("id")["fold"])
        return [(f"fold{k}", fold == k) for k in range(member.folds)]
    seed = recipe.seed if member.split_seed is None else member.split_seed
    path = folder / ("splits.csv" if member.split_seed is None else f"splits-seed{seed}.csv")
    splits = load_splits(path, ids) if path.is_file() else make_splits(ids, recipe.valid_pct, seed, stratify)
    save_splits(splits, path)
    return [("", ids.map(splits.set_index("id")["is_valid"]).astype(bool))]
