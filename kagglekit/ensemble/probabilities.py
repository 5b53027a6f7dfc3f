"""Probabilities are the currency between steps: each member's TTA probabilities for the validation and
test rows are saved to disk, and ensembles average probabilities (never votes), so a member trained
elsewhere or yesterday can join an ensemble without retraining. numpy and pandas only: cheap to import.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from kagglekit._io import atomic_write


@dataclass
class Probabilities:
    """Per-task probability matrices for a list of ids (rows aligned with `ids`)."""

    ids: list[str]
    tasks: dict[str, np.ndarray]
    vocab: dict[str, list[str]]

    def save(self, folder: Path, split: str) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        atomic_write(folder / f"{split}_ids.csv", lambda tmp: pd.Series(self.ids, name="id").to_csv(tmp, index=False))
        for task, probs in self.tasks.items():
            frame = pd.DataFrame(probs, columns=self.vocab[task])
            atomic_write(
                folder / f"{split}_{task}.csv.gz",
                lambda tmp, f=frame: f.to_csv(tmp, index=False, compression="gzip"),
            )

    @classmethod
    def load(cls, folder: Path, split: str) -> Probabilities:
        ids = pd.read_csv(folder / f"{split}_ids.csv", dtype={"id": str})["id"].tolist()
        tasks, vocab = {}, {}
        for path in sorted(folder.glob(f"{split}_*.csv.gz")):
            task = path.name[len(split) + 1 : -len(".csv.gz")]
            frame = pd.read_csv(path, compression="gzip")
            tasks[task], vocab[task] = frame.to_numpy(dtype=np.float32), list(frame.columns)
        return cls(ids, tasks, vocab)

    def concat(self, *others: Probabilities) -> Probabilities:
        """Rows of all (same tasks and classes): out-of-fold parts, or predictions plus fallbacks."""
        if any(other.vocab != self.vocab for other in others):
            raise ValueError("Cannot concatenate probabilities over different tasks or classes.")
        tasks = {t: np.concatenate([p, *(o.tasks[t] for o in others)]) for t, p in self.tasks.items()}
        return Probabilities([*self.ids, *(i for o in others for i in o.ids)], tasks, self.vocab)

    def subset(self, ids: Sequence[str]) -> Probabilities:
        position = {i: n for n, i in enumerate(self.ids)}
        rows = [position[i] for i in ids]
        return Probabilities(list(ids), {t: p[rows] for t, p in self.tasks.items()}, self.vocab)
