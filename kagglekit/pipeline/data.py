"""Stage 1: from a competition folder to data the members can train on."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np
import pandas as pd

from kagglekit.competition import Competition
from kagglekit.data.corrections import apply_corrections
from kagglekit.data.images import DEFAULT_COVER, prepare_images, recipe_cover
from kagglekit.data.items import Items, load_items, vocabularies
from kagglekit.defaults import cache_root
from kagglekit.ensemble.combine import class_shares, prior_probabilities
from kagglekit.ensemble.probabilities import Probabilities
from kagglekit.recipe import Recipe


@dataclass
class Data:
    """A competition's data ready for training.

    `items.train` / `items.test` have one row per image (`id`, `path` the loaders open, one column per task);
    `vocab` lists each task's classes in output order; `undecodable_test` (id, path, reason) holds the test images
    no model can read, which the ensemble predicts with the training prior; `image_cache` counts the images the cache
    decoded now, reused, could not read, and decoded with a note. `shares` are the training class shares when the
    training table is not at hand (an inference pack's); otherwise they come from `items.train`.
    """

    competition: Competition
    items: Items
    vocab: dict[str, list[str]]
    undecodable_test: pd.DataFrame
    image_cache: dict[str, int] = field(default_factory=dict)
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


def prepare_data(
    competition: Competition, data_dir: Path, cache_dir: Path | None = None, recipe: Recipe | None = None
) -> Data:
    """Read the competition's tables, resolve every image, and decode each once into the image cache, at the size
    the `recipe`'s members need (without a recipe: images a 512 px model could use).

    Training rows with an empty label or an unreadable image are skipped and listed in `items.skipped`; a missing
    test image is a `DataError` (the submission needs every id), an unreadable one is in `undecodable_test`.
    `cache_dir` defaults to the user's cache folder.
    """
    items = load_items(competition, data_dir)
    vocab = vocabularies(competition, items)
    cover = recipe_cover(recipe) if recipe else DEFAULT_COVER
    prepared = prepare_images(competition, items, Path(cache_dir or cache_root() / "images"), cover)
    return Data(competition, prepared.items, vocab, prepared.undecodable_test, prepared.cache)


def labels_only(competition: Competition, data_dir: Path) -> Data:
    """The tables and classes without touching the images: enough to score, tune and order a submission."""
    items = load_items(competition, data_dir, images=False)
    empty = pd.DataFrame(columns=["id", "path", "reason"])
    return Data(competition, items, vocabularies(competition, items), empty)


def corrected(data: Data, corrections: list[dict]) -> tuple[Data, pd.DataFrame]:
    """The data with label corrections (`{id, action, label, line}` records, as run.json keeps them) applied to
    its training table, and what changed (see `apply_corrections`); the files on disk are not touched."""
    marked = pd.DataFrame(corrections, columns=["id", "action", "label", "line"])
    train, changed = apply_corrections(data.items.train, marked, data.competition, data.vocab)
    return replace(data, items=replace(data.items, train=train)), changed
