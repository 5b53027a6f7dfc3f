"""Training progress: fastai's per-batch bars when someone watches, else one log line per epoch."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from fastai.callback.core import Callback
from fastai.callback.progress import ProgressCallback
from fastai.learner import Learner

from kagglekit._output import interactive

log = logging.getLogger(__name__)


class ClearCancelledBar(Callback):
    """Clears the batch bar of a fit cancelled mid-epoch (lr_find stops after `num_it` batches), as fastai's
    `ProgressCallback` does when an epoch ends; fastai leaves it on the screen, and the next line is printed after
    it."""

    order = ProgressCallback.order + 1

    def after_cancel_fit(self) -> None:
        bar = getattr(getattr(self.learn, "progress", None), "pbar", None)
        if bar is not None and bar.last_v is not None:  # started and not finished (fastprogress resets it at the end)
            bar.on_iter_end()


def show_progress(learn: Learner, member: str) -> None:
    """Keep fastai's bars for a terminal or notebook (a cancelled fit's cleared, see `ClearCancelledBar`); otherwise
    log one line per epoch instead, e.g. `m epoch 3/6: train_loss 0.912, valid_loss 1.034, label_accuracy 0.612
    (00:14)`.

    The line goes through `learn.logger`, which fastai's recorder calls once per training epoch (and never while
    predicting), the hook fastai's own progress bar uses for its table.
    """
    if interactive():
        learn.add_cb(ClearCancelledBar())
        return
    learn.remove_cb(ProgressCallback)

    def epoch_line(values: Sequence) -> None:
        if len(values) <= 2:  # only the epoch and its time: an epoch skipped when resuming
            return
        named = dict(zip(learn.recorder.metric_names, values, strict=False))
        epoch, took = named.pop("epoch"), named.pop("time", "")
        scores = ", ".join(f"{name} {value:.4g}" for name, value in named.items() if isinstance(value, float))
        log.info("%s epoch %d/%d: %s (%s)", member, epoch + 1, learn.n_epoch, scores, took)

    learn.logger = epoch_line
