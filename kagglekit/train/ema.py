"""An exponential moving average (EMA) of a member's weights: what is validated, predicted, saved and exported.

The average is timm's `ModelEmaV3` (timm `train.py --model-ema`). It averages every floating-point entry of the
state dict, parameters *and* batch-norm running statistics, so the averaged model normalises with statistics
of its own history instead of the raw model's (integer counters are copied). Its decay warms up as
min(decay, 1 - (1 + step)^-3/4) (timm's `use_warmup`, power 3/4, timm's advice for runs of under a million
steps): without warm-up a decay of 0.9998 would keep most of the random initial weights in a run of a few
thousand steps. It is updated after every optimizer step (after gradient accumulation, so once per effective
batch), swapped into the model for every validation, and copied into the model when training ends.
"""

from __future__ import annotations

import torch
from fastai.callback.core import Callback
from fastai.torch_core import get_model
from timm.utils import ModelEmaV3
from torch import nn

WARMUP_POWER = 3 / 4


class WeightEma:
    """The moving average of `model`'s weights with decay `decay`, and how many optimizer steps it has seen."""

    def __init__(self, model: nn.Module, decay: float):
        self.average = ModelEmaV3(get_model(model), decay=decay, use_warmup=True, warmup_power=WARMUP_POWER)
        self.steps = 0

    def update(self, model: nn.Module) -> None:
        """One optimizer step taken: move the average towards `model`'s weights."""
        self.steps += 1
        self.average.update(get_model(model), step=self.steps)

    def decay(self, step: int) -> float:
        """The decay applied at optimizer step `step` (1-based): 0 at the first step, then warming up."""
        return self.average.get_decay(step)

    def state_dict(self) -> dict:
        """The averaged weights and the step count, for checkpoints (resume continues the same average)."""
        return {"weights": self.average.module.state_dict(), "steps": self.steps}

    def load_state_dict(self, state: dict) -> None:
        self.average.module.load_state_dict(state["weights"])
        self.steps = int(state["steps"])

    def copy_to(self, model: nn.Module) -> None:
        """Make `model` the averaged model (when training ends: it is what is predicted and saved)."""
        get_model(model).load_state_dict(self.average.module.state_dict())

    def callback(self) -> Callback:
        return EmaCallback(self)


class EmaCallback(Callback):
    """Updates the average after every optimizer step and validates the averaged weights instead of the raw ones.

    Gradient accumulation cancels the batches that do not step before `after_step`; a step that mixed precision
    skips (infinite gradients) is cancelled after `before_step` and does not count either. For validation the raw
    weights are set aside and restored afterwards, in place, so the optimizer keeps its parameters.
    """

    def __init__(self, ema: WeightEma):
        self.ema, self.raw, self.skipped = ema, None, False

    def after_cancel_step(self) -> None:
        self.skipped = True

    def after_step(self) -> None:
        if not self.skipped:
            self.ema.update(self.learn.model)
        self.skipped = False

    def before_validate(self) -> None:
        model = get_model(self.learn.model)
        self.raw = {k: v.detach().clone() for k, v in model.state_dict().items()}
        self.ema.copy_to(model)

    def after_validate(self) -> None:
        if self.raw is not None:
            with torch.no_grad():
                get_model(self.learn.model).load_state_dict(self.raw)
            self.raw = None
