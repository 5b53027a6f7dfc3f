"""A fastai learner over a timm body: weights, normalisation, precision and memory layout."""

from __future__ import annotations

from collections.abc import Sequence

# Imported for the Learner methods they add: to_channelslast, to_fp16/to_bf16, fit_one_cycle.
import fastai.callback.channelslast
import fastai.callback.fp16
import fastai.callback.schedule  # noqa: F401
import numpy as np
import torch
from fastai.data.transforms import Normalize
from fastai.learner import Learner
from fastai.vision.learner import vision_learner

from kagglekit.recipe import Member
from kagglekit.train.heads import Head, TaskLoss, task_accuracy
from kagglekit.train.weights import timm_overlay, weights_file


def create_learner(dls, member: Member, heads: Sequence[Head], channels: int = 3) -> Learner:
    """A fastai learner over a timm body. Weights from a file still get timm's normalisation statistics."""
    metrics = [task_accuracy(head, i) for i, head in enumerate(heads)]
    n_out = sum(len(h.vocab) for h in heads)
    extra = {}
    if isinstance(member.pretrained, str):
        extra["pretrained_cfg_overlay"] = timm_overlay(weights_file(member.pretrained, member.arch))
    pretrained = bool(member.pretrained)
    learn = vision_learner(
        dls, member.arch, pretrained=pretrained, n_out=n_out, n_in=channels, loss_func=TaskLoss(heads),
        metrics=metrics, **extra,
    )  # fmt: skip
    if pretrained and channels == 1:  # fastai skips normalisation when channels differ: use the channel mean
        config = learn.model[0].model.default_cfg
        mean, std = float(np.mean(config["mean"])), float(np.mean(config["std"]))
        dls.add_tfms([Normalize.from_stats([mean], [std], cuda=False)], "after_batch")
    return learn


def normalization(learn: Learner) -> dict[str, list[float]] | None:
    """The Normalize statistics applied to batches (None: inputs are 0..1), recorded for export."""
    for tfm in learn.dls.after_batch.fs:
        if isinstance(tfm, Normalize):
            return {"mean": tfm.mean.flatten().tolist(), "std": tfm.std.flatten().tolist()}
    return None


def apply_precision(learn: Learner, member: Member) -> list[str]:
    """Mixed precision and channels_last on CUDA; on the CPU they are ignored, and the notes say so."""
    notes = []
    cuda = torch.cuda.is_available()
    if member.precision in ("fp16", "bf16") and not cuda:
        notes.append(f"{member.name}: precision {member.precision} ignored on the CPU (trained in fp32)")
    if member.channels_last and not cuda:
        notes.append(f"{member.name}: channels_last ignored on the CPU")
    if not cuda:
        return notes
    precision = member.precision
    if precision == "auto":
        precision = "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if precision == "fp16":
        learn.to_fp16()
    elif precision == "bf16":
        learn.to_bf16()
    if member.channels_last is not False:
        learn.to_channelslast()
    return notes
