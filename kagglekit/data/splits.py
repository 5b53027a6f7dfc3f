"""Validation splits, persisted with the run so every ensemble member is judged on the same rows."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from kagglekit._io import write_csv
from kagglekit.competition import Competition
from kagglekit.errors import DataError
from kagglekit.recipe import Member, Recipe

log = logging.getLogger(__name__)


def _stratify_labels(labels: pd.Series, n_splits: int) -> pd.Series:
    """Classes too rare to appear in every split join the largest class's stratum instead of failing."""
    counts = labels.value_counts()
    rare = counts[counts < n_splits].index
    if len(rare):
        log.info("Stratifying with %d rare class(es) pooled: %s", len(rare), ", ".join(map(str, rare[:5])))
    return labels.where(~labels.isin(rare), counts.index[0])


def make_splits(
    ids: pd.Series, valid_pct: float = 0.2, seed: int = 42, stratify: pd.Series | None = None
) -> pd.DataFrame:
    """A seeded hold-out split: `id, is_valid`. `stratify` (labels aligned with `ids`) keeps class balance."""
    if not 0 < valid_pct < 1:
        raise ValueError(f"valid_pct must be between 0 and 1, got {valid_pct}.")
    positions = np.arange(len(ids))
    strata = None if stratify is None else _stratify_labels(stratify.reset_index(drop=True), 2)
    _, valid = train_test_split(positions, test_size=valid_pct, random_state=seed, stratify=strata)
    is_valid = np.zeros(len(ids), dtype=bool)
    is_valid[valid] = True
    return pd.DataFrame({"id": ids.to_numpy(), "is_valid": is_valid})


def make_folds(ids: pd.Series, k: int = 5, seed: int = 42, stratify: pd.Series | None = None) -> pd.DataFrame:
    """A seeded k-fold assignment: `id, fold` with fold in 0..k-1."""
    if k < 2:
        raise ValueError(f"k-fold needs k >= 2, got {k}.")
    fold = np.zeros(len(ids), dtype=int)
    if stratify is None:
        splitter = KFold(k, shuffle=True, random_state=seed).split(ids)
    else:
        strata = _stratify_labels(stratify.reset_index(drop=True), k)
        splitter = StratifiedKFold(k, shuffle=True, random_state=seed).split(ids, strata)
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
