"""Validation splits, persisted with the run so every ensemble member is judged on the same rows."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.model_selection import KFold, StratifiedKFold, train_test_split

from kagglekit.files import atomic_write

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


def save_splits(splits: pd.DataFrame, path: Path) -> Path:
    return atomic_write(path, lambda tmp: splits.to_csv(tmp, index=False))


def load_splits(path: Path, ids: pd.Series) -> pd.DataFrame:
    """Read persisted splits and make sure they describe exactly the current training rows."""
    splits = pd.read_csv(path, dtype={"id": str})
    if set(splits["id"]) != set(ids):
        raise ValueError(
            f"{path} was made for different training rows ({len(splits)} ids vs {len(ids)} now). "
            "Start a new run (or delete the file) to split the current data."
        )
    return splits
