"""fastai callbacks that watch a member train (`train_member(..., cbs=[...])`), and one that kills it."""

from __future__ import annotations

from collections import Counter

import torch
from fastai.callback.core import Callback
from fastai.torch_core import get_model

from kagglekit.train.checkpoint import EpochCheckpoint


def _phase(learn) -> int:
    return next(cb.phase for cb in learn.cbs if isinstance(cb, EpochCheckpoint))


class Watch(Callback):
    """Per (phase, epoch): training batches, their shapes (batch, channels, height, width) and targets, optimizer
    steps, and the raw weights and validation loss at the epoch's end. Runs after every kagglekit callback."""

    order = EpochCheckpoint.order + 1

    def __init__(self):
        self.batches, self.steps = Counter(), Counter()
        self.shapes, self.targets, self.weights, self.valid_loss, self.step_weights = {}, {}, {}, {}, []

    def before_batch(self):
        if self.training:
            key = (_phase(self.learn), self.epoch)
            self.batches[key] += 1
            self.shapes.setdefault(key, set()).add(tuple(self.x.shape))
            self.targets.setdefault(key, []).append(tuple(y.as_subclass(torch.Tensor).clone() for y in self.yb))

    def after_step(self):
        self.steps[(_phase(self.learn), self.epoch)] += 1
        self.step_weights.append({k: v.detach().clone() for k, v in get_model(self.learn.model).state_dict().items()})

    def after_epoch(self):
        key = (_phase(self.learn), self.epoch)
        if self.batches[key]:  # not an epoch skipped on resume
            state = get_model(self.learn.model).state_dict()
            self.weights[key] = {k: v.detach().clone() for k, v in state.items()}
            self.valid_loss[key] = float(self.learn.recorder.values[-1][1])


class Killed(Exception):
    """Stands in for a kill: raised after the checkpoint of an epoch was written."""


class KillAfter(Callback):
    """Stops training after epoch `epoch` of phase `phase` was checkpointed, as a kill would."""

    order = EpochCheckpoint.order + 2

    def __init__(self, phase: int, epoch: int):
        self.phase, self.kill_epoch = phase, epoch

    def after_epoch(self):
        if (_phase(self.learn), self.epoch) == (self.phase, self.kill_epoch):
            raise Killed(f"killed after epoch {self.kill_epoch} of phase {self.phase}")
