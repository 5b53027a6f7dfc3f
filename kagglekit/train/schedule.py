"""The member's training schedule: fastai's `fine_tune` generalised to progressive resizing, and gradient
accumulation expressed as an effective batch size."""

from __future__ import annotations

from dataclasses import dataclass

from fastai.callback.training import GradientAccumulation

from kagglekit.errors import RecipeError
from kagglekit.recipe import Member


def accumulation_callbacks(member: Member, n_train: int) -> list:
    """Gradient accumulation expressed as an effective batch size.

    fastai's GradientAccumulation counts *samples*: `n_acc` must be the effective batch size, and the
    loader's batch the effective size divided by `accum`. Building it only here makes the silent
    misconfiguration (n_acc = number of batches) impossible.
    """
    if n_train < member.batch_size:
        raise RecipeError(
            f"member {member.name!r}: batch_size {member.batch_size} is larger than the {n_train} training "
            "images, so no optimizer step would ever run. Lower batch_size (and accum)."
        )
    return [GradientAccumulation(n_acc=member.batch_size)] if member.accum > 1 else []


@dataclass(frozen=True)
class Phase:
    """One call of fit_one_cycle: a stage's size, with the body frozen (head only) or not."""

    stage: int
    epochs: int
    frozen: bool
    lr: float | slice
    pct_start: float
    div: float


def schedule(member: Member) -> list[Phase]:
    """fastai's `fine_tune`, generalised to progressive resizing.

    A pretrained body, and every stage after the first (new size, new statistics), first re-fits the head
    with the body frozen for `freeze_epochs`, then trains everything at half the rate with discriminative
    rates for pretrained bodies. A from-scratch first stage is a plain one-cycle fit.
    """
    phases = []
    for number, stage in enumerate(member.stage_list):
        if (member.pretrained or number > 0) and member.freeze_epochs:
            half = stage.lr / 2
            phases.append(Phase(number, member.freeze_epochs, True, stage.lr, 0.99, 25.0))
            phases.append(
                Phase(number, stage.epochs, False, slice(half / 100, half) if member.pretrained else half, 0.3, 5.0)
            )
        else:
            phases.append(Phase(number, stage.epochs, False, stage.lr, 0.25, 25.0))
    return phases
