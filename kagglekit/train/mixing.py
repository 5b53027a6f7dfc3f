"""Mixup, cutmix and label smoothing: training targets as class probabilities, mixed per head.

fastai's `MixUp`/`CutMix` callbacks do not fit kagglekit's members: they mix losses only for a loss that declares
`y_int`, and otherwise interpolate the targets as they come (class *indices*, for single-label heads), and `CutMix`
keeps only the first target, dropping every other head of a multi-task member. timm's `Mixup` mixes one target.
So this callback turns every head's target into probabilities (one-hot, smoothed for single-label heads; the
0/1 tags of multi-label heads as they are) and mixes all of them with the image's lambda, as timm's `Mixup` does
in its "batch" mode: one lambda per batch, each image mixed with the batch reversed, cutmix's lambda corrected to
the pasted area (timm's `cutmix_bbox_and_lam`). `TaskLoss` takes such targets as they are; cross-entropy and BCE
are linear in the target, so the loss equals lambda x loss(own targets) + (1 - lambda) x loss(partner's targets).
Validation batches are left alone: validation losses stay plain log losses.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F
from fastai.callback.core import Callback
from timm.data.mixup import cutmix_bbox_and_lam

from kagglekit.recipe import Member
from kagglekit.train.heads import Head

SWITCH_PROB = 0.5  # with both mixup and cutmix set, the chance a mixed batch uses cutmix (timm's default)


def soft_targets(heads: Sequence[Head], targets: Sequence[torch.Tensor], smoothing: float = 0.0) -> list:
    """Each head's target as a (batch, classes) float matrix: one-hot class indices, smoothed towards the uniform
    distribution by `smoothing` (Szegedy et al. 2016: (1 - e) * one_hot + e / classes, as `F.cross_entropy`'s
    `label_smoothing`), for single-label heads; multi-label 0/1 tags unchanged."""
    soft = []
    for head, target in zip(heads, targets, strict=True):
        target = target.as_subclass(torch.Tensor)
        if head.kind == "single":
            target = F.one_hot(target.long(), len(head.vocab)).float() * (1 - smoothing) + smoothing / len(head.vocab)
        soft.append(target.float())
    return soft


class Mixing(Callback):
    """Replaces each training batch by its mixup/cutmix version with soft targets (label smoothing included).

    `first_epoch` is where the current fit starts in the member's whole schedule (its earlier phases' epochs) and
    `mix_until` the schedule epoch from which batches are no longer mixed (`mix_off_epochs` before the end);
    targets stay smoothed after it. Draws come from numpy's global generator, which checkpoints save and restore.
    """

    run_valid = False

    def __init__(self, member: Member, heads: Sequence[Head], first_epoch: int = 0, mix_until: int | None = None):
        self.member, self.heads, self.first_epoch, self.mix_until = member, list(heads), first_epoch, mix_until
        self.lam = 1.0  # the last batch's share of its own image (1: not mixed)

    def before_batch(self) -> None:
        if self.member.mixes and (self.mix_until is None or self.first_epoch + self.epoch < self.mix_until):
            x, targets = self.mix(self.x, self.yb)
        elif self.member.label_smoothing:
            x, targets = self.x, soft_targets(self.heads, self.yb, self.member.label_smoothing)
        else:
            return
        self.learn.xb, self.learn.yb = (x,), tuple(targets)

    def draw(self) -> tuple[float, bool]:
        """(lambda, whether to cut) for one batch: timm's per-batch rule, or (1.0, False) when not mixed."""
        member = self.member
        if np.random.rand() >= member.mix_prob:
            return 1.0, False
        cut = member.cutmix > 0 and (member.mixup <= 0 or np.random.rand() < SWITCH_PROB)
        alpha = member.cutmix if cut else member.mixup
        return float(np.random.beta(alpha, alpha)), cut

    def mix(self, x: torch.Tensor, targets: Sequence[torch.Tensor]) -> tuple[torch.Tensor, list]:
        """One mixed batch: images (batch, channels, height, width) and every head's soft target, same lambda."""
        lam, cut = self.draw()
        partner = x.flip(0)
        if cut:
            (top, bottom, left, right), lam = cutmix_bbox_and_lam(x.shape, lam, correct_lam=True)
            x = x.clone()
            x[..., top:bottom, left:right] = partner[..., top:bottom, left:right]
        elif lam < 1:
            x = x * lam + partner * (1 - lam)
        self.lam = float(lam)
        soft = soft_targets(self.heads, targets, self.member.label_smoothing)
        return x, [t * self.lam + t.flip(0) * (1 - self.lam) for t in soft]
