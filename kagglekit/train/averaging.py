"""Averaging the weights of a member's best epochs: timm's `avg_checkpoints.py` (the top k by validation, every
state-dict entry averaged, batch-norm statistics included) or a greedy soup (Wortsman et al. 2022, "Model soups":
epochs taken best first, each kept only if the average with it validates better; AutoGluon averages its top 3
that way).

Candidates are the epochs of the member's last phase, the fully trained network at its final size, ranked by
validation loss; with `ema` set, the averaged weights that were validated. Each kept epoch's weights are one
file in `averaging/` beside the checkpoint, written once; the checkpoint lists the kept ones, so a resumed run
continues with the same pool and files of a killed run that no checkpoint lists are removed.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import torch
from fastai.callback.core import Callback
from fastai.learner import Learner, Recorder
from fastai.torch_core import get_model
from safetensors.torch import load_file, save_file

from kagglekit._io import atomic_write
from kagglekit.train.distributed import is_main_process

log = logging.getLogger(__name__)

POOL = "averaging"
Weights = dict[str, torch.Tensor]


@dataclass(frozen=True)
class Candidate:
    """One epoch's weights kept for averaging, and its validation loss."""

    phase: int
    epoch: int
    valid_loss: float

    @property
    def file(self) -> str:
        return f"phase{self.phase}-epoch{self.epoch}.safetensors"


def mean_weights(states: list[Weights]) -> Weights:
    """The entry-wise mean of state dicts (in float64, as timm's `avg_checkpoints.py`, then the original dtype);
    integer entries (batch norm's `num_batches_tracked`) are taken from the first."""
    mean = {}
    for key, first in states[0].items():
        if first.is_floating_point():
            total = sum(state[key].to(torch.float64) for state in states)
            mean[key] = (total / len(states)).to(first.dtype)
        else:
            mean[key] = first.clone()
    return mean


class CheckpointPool:
    """The `k` best epochs of phase `phase` by validation loss, kept in `folder/averaging/`."""

    def __init__(self, folder: Path, k: int, phase: int, mode: str = "uniform"):
        self.folder, self.k, self.phase, self.mode = Path(folder) / POOL, k, phase, mode
        self.kept: list[Candidate] = []

    def offer(self, phase: int, epoch: int, valid_loss: float, weights: Weights) -> None:
        """A validated epoch: keep its weights if it is among the `k` best of the last phase so far."""
        if phase != self.phase or not math.isfinite(valid_loss):
            return
        candidate = Candidate(phase, epoch, valid_loss)
        ranked = sorted([*self.kept, candidate], key=lambda c: c.valid_loss)[: self.k]
        if candidate in ranked:
            tensors = {k: v.detach().cpu().clone().contiguous() for k, v in weights.items()}
            atomic_write(self.folder / candidate.file, lambda tmp: save_file(tensors, str(tmp)))
            self.kept = ranked

    def prune(self) -> None:
        """Delete the files no longer kept (after the checkpoint that drops them is written)."""
        if self.folder.is_dir():
            keep = {c.file for c in self.kept}
            for path in self.folder.iterdir():
                if path.name not in keep:
                    path.unlink()

    def state_dict(self) -> dict:
        return {"kept": [asdict(c) for c in self.kept]}

    def load_state_dict(self, state: dict) -> None:
        self.kept = [Candidate(**c) for c in state["kept"] if (self.folder / Candidate(**c).file).is_file()]
        if len(self.kept) < len(state["kept"]):
            log.warning("Some epochs kept for averaging are missing from %s; averaging the others.", self.folder)
        self.prune()

    def callback(self, phase: int, start: int, weights: Callable[[], Weights]) -> Callback:
        """Offers every validated epoch of phase `phase` from epoch `start` on; `weights()` gives what was validated."""
        return OfferEpochs(self, phase, start, weights)

    def load(self, candidate: Candidate) -> Weights:
        return load_file(str(self.folder / candidate.file))

    def average(self, learn: Learner) -> dict:
        """Put the averaged weights into `learn.model` and validate them; returns the report for member.json.

        Uniform: the mean of every kept epoch. Greedy: starting from the best epoch, each next-best is added
        when the mean with it has a lower validation loss than without.
        """
        ranked = sorted(self.kept, key=lambda c: c.valid_loss)
        if self.mode == "uniform":
            chosen, states = ranked, [self.load(c) for c in ranked]
        else:
            chosen, states, best = ranked[:1], [self.load(ranked[0])], ranked[0].valid_loss
            for candidate in ranked[1:]:
                trial = [*states, self.load(candidate)]
                loss = _validate(learn, mean_weights(trial))[0]
                if loss < best:
                    chosen, states, best = [*chosen, candidate], trial, loss
        values = _validate(learn, mean_weights(states))
        names = ["valid_loss", *(n for n in learn.recorder.metric_names[3:-1])]
        return {
            "mode": self.mode,
            "epochs": [asdict(c) for c in chosen],
            **{name: float(value) for name, value in zip(names, values, strict=False)},
        }


def _validate(learn: Learner, weights: Weights) -> list[float]:
    """Validation loss and metrics of `weights`, which stay in the model."""
    get_model(learn.model).load_state_dict(weights)
    return [float(v) for v in learn.validate()]


class OfferEpochs(Callback):
    """After each validated epoch (after the recorder, before the checkpoint), offers its weights to the pool."""

    order = Recorder.order + 1

    def __init__(self, pool: CheckpointPool, phase: int, start: int, weights: Callable[[], Weights]):
        self.pool, self.phase, self.start, self.weights = pool, phase, start, weights

    def after_epoch(self) -> None:
        values = self.learn.recorder.values[-1]
        if self.epoch < self.start or len(values) < 2 or not is_main_process():  # skipped; not validated; other rank
            return
        self.pool.offer(self.phase, self.epoch, float(values[1]), self.weights())
