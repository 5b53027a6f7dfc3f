"""Training progress: fastai's per-batch bars when someone watches, else one log line per epoch."""

from __future__ import annotations

import logging
import time

from fastai.callback.core import Callback
from fastai.callback.progress import ProgressCallback
from fastai.learner import Learner, Recorder

from kagglekit._output import interactive

log = logging.getLogger(__name__)


class EpochLine(Callback):
    """Logs `<name> epoch 3/6: train_loss 0.912, valid_loss 1.034, label_accuracy 0.612 (14 s)` after each epoch."""

    order = Recorder.order + 1  # after the recorder has the epoch's values

    def __init__(self, member: str):
        self.member = member

    def before_epoch(self) -> None:
        self.started = time.perf_counter()

    def after_epoch(self) -> None:
        names = [n for n in self.recorder.metric_names[1:] if n != "time"]
        pairs = zip(names, self.recorder.values[-1], strict=False)
        values = ", ".join(f"{n} {v:.4g}" for n, v in pairs if v is not None)
        seconds = time.perf_counter() - self.started
        log.info("%s epoch %d/%d: %s (%.0f s)", self.member, self.epoch + 1, self.n_epoch, values, seconds)


def show_progress(learn: Learner, name: str) -> None:
    """Keep fastai's bars for a terminal or notebook; otherwise one line per epoch instead."""
    if interactive():
        return
    learn.remove_cb(ProgressCallback)
    learn.add_cb(EpochLine(name))
