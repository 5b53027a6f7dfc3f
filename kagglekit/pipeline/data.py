"""Stage 1: from a competition folder to data the members can train on."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kagglekit.competition import Competition
from kagglekit.data.images import prepare_images
from kagglekit.data.items import Items, load_items, vocabularies
from kagglekit.defaults import cache_root
from kagglekit.ensemble.combine import class_shares, prior_probabilities
from kagglekit.ensemble.probabilities import Probabilities


@dataclass
class Data:
    """A competition's data ready for training.

    `items.train` / `items.test` have one row per image (`id`, `path` the loaders open, one column per task);
    `vocab` lists each task's classes in output order; `undecodable_test` (id, path, reason) holds the test images
    no model can read, which the ensemble predicts with the training prior. `shares` are the training class shares
    when the training table is not at hand (an inference pack's); otherwise they come from `items.train`.
    """

    competition: Competition
    items: Items
    vocab: dict[str, list[str]]
    undecodable_test: pd.DataFrame
    shares: dict[str, np.ndarray] | None = None

    def prior(self) -> dict[str, np.ndarray]:
        """Each task's class shares in the training labels (see `kagglekit.ensemble.class_shares`)."""
        return self.shares if self.shares is not None else class_shares(self.items.train, self.competition, self.vocab)

    def fallback(self, tasks: Iterable[str] | None = None) -> Probabilities | None:
        """The training prior of `tasks` (default: every task) for every undecodable test image (None when there is
        none)."""
        if not len(self.undecodable_test):
            return None
        vocab = self.vocab if tasks is None else {task: self.vocab[task] for task in tasks}
        return prior_probabilities(self.prior(), vocab, self.undecodable_test["id"].tolist())


def prepare_data(competition: Competition, data_dir: Path, cache_dir: Path | None = None) -> Data:
    """Read the competition's tables, resolve every image, and decode what needs decoding into the image cache.

    Training rows with an empty label or an unreadable image are skipped and listed in `items.skipped`; a missing
    test image is a `DataError` (the submission needs every id). `cache_dir` defaults to the user's cache folder.
    """
    items = load_items(competition, data_dir)
    vocab = vocabularies(competition, items)
    prepared = prepare_images(competition, items, Path(cache_dir or cache_root() / "images"))
    return Data(competition, prepared.items, vocab, prepared.undecodable_test)


def labels_only(competition: Competition, data_dir: Path) -> Data:
    """The tables and classes without touching the images: enough to score, tune and order a submission."""
    items = load_items(competition, data_dir, images=False)
    empty = pd.DataFrame(columns=["id", "path", "reason"])
    return Data(competition, items, vocabularies(competition, items), empty)
