"""Test-time augmentation: one member's probabilities for an item table."""

from __future__ import annotations

import time

import numpy as np
import pandas as pd
import torch
from fastai.learner import Learner
from fastai.torch_core import no_random

from kagglekit._output import track
from kagglekit.ensemble.probabilities import Probabilities

TTA_SEED = 0  # augmented passes draw from this seed: the same images get the same augmentations wherever predicted


def predict_member(
    learn: Learner,
    items: pd.DataFrame,
    n_tta: int = 4,
    label: str = "TTA",
    seed: int = TTA_SEED,
    timings: list[float] | None = None,
) -> Probabilities:
    """Probabilities for `items` (an item table): the mean of `n_tta` augmented passes and one plain pass.

    The mean is kept as a running mean, so memory does not grow with `n_tta` (fastai's `Learner.tta`
    keeps every pass and blends them with a lerp instead of averaging). The random augmentations are drawn from
    `seed` (the caller's random state is restored afterwards), so a run and an inference pack predicting the same
    images in the same batches get the same probabilities. With `timings`, the seconds each pass took are appended
    to it (augmented passes first, the plain pass last).
    """
    return predict_member_passes(learn, items, n_tta, label, seed, timings)[0]


def predict_member_passes(
    learn: Learner,
    items: pd.DataFrame,
    n_tta: int = 4,
    label: str = "TTA",
    seed: int = TTA_SEED,
    timings: list[float] | None = None,
) -> tuple[Probabilities, Probabilities]:
    """`(TTA, plain)` probabilities for `items` from the same passes (as `predict_member`): the running mean of
    `n_tta` augmented passes and one plain pass, and the plain pass alone (what TTA is measured against). With
    `n_tta = 0` both are the plain pass."""
    heads = learn.loss_func.heads
    passes = [0] * n_tta + [1]  # split_idx 0 applies the training transforms, 1 the plain ones
    mean = plain = None
    with no_random(seed, reproducible=False):
        dl = learn.dls.test_dl(items, with_labels=False)  # its own random generator is drawn from `seed` too
        for done, split_idx in enumerate(track(passes, description=f"{label} ({n_tta}+1 passes)")):
            started = time.perf_counter()
            with dl.dataset.set_split_idx(split_idx), learn.no_bar():
                probs, _ = learn.get_preds(dl=dl)
            if timings is not None:
                timings.append(time.perf_counter() - started)
            probs = probs.to(torch.float64)
            plain = probs if split_idx == 1 else plain
            mean = probs if mean is None else mean + (probs - mean) / (done + 1)

    def wrap(matrix: torch.Tensor) -> Probabilities:
        array = matrix.numpy().astype(np.float32)
        return Probabilities(
            ids=items["id"].tolist(),
            tasks={h.task: array[:, h.slice] for h in heads},
            vocab={h.task: list(h.vocab) for h in heads},
        )

    return wrap(mean), wrap(plain)
