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

from kagglekit.errors import one_line
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


def precision_for(requested: str, capability: tuple[int, int] | None) -> tuple[str, str | None]:
    """The precision to train in on a GPU of this compute capability (None: the CPU), and a note when it is not
    what was asked for.

    auto: bf16 where it is native (capability >= 8.0: A100, L4, H100, RTX 30xx and later); fp16 with a gradient
    scaler on 7.x (T4, V100) and 6.0 (P100), which have fast fp16; fp32 on older GPUs and the CPU.
    `torch.cuda.is_bf16_supported()` is no guide: it also says True on a T4, where bf16 is emulated and slow.
    An explicit bf16 on a GPU without native bf16 trains in fp16 instead; fp16/bf16 on the CPU train in fp32.
    """
    if capability is None:
        return "fp32", None if requested in ("auto", "fp32") else f"precision {requested} ignored on the CPU"
    native_bf16, fast_fp16 = capability >= (8, 0), capability >= (7, 0) or capability == (6, 0)
    if requested == "auto":
        return "bf16" if native_bf16 else "fp16" if fast_fp16 else "fp32", None
    if requested == "bf16" and not native_bf16:
        where = f"compute capability {capability[0]}.{capability[1]}"
        return "fp16", f"bf16 is not native on {where} (emulated, slow): fp16 with a gradient scaler instead"
    return requested, None


def has_batch_norm(model: torch.nn.Module) -> bool:
    """A convolutional network with 2-d batch norm (timm's BatchNormAct2d included): the models channels_last speeds
    up. ConvNeXt and ViT gain nothing (fastai's head has a BatchNorm1d, which does not count)."""
    return any(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())


def apply_precision(learn: Learner, member: Member) -> list[str]:
    """Mixed precision by the GPU's compute capability, channels_last for batch-norm CNNs, and `compile` when the
    member asks; returns notes saying what was chosen or ignored (the CPU trains in fp32, channels-first)."""
    cuda = torch.cuda.is_available()
    capability = torch.cuda.get_device_capability() if cuda else None
    precision, note = precision_for(member.precision, capability)
    notes = [f"{member.name}: {note}"] if note else []
    if precision == "fp16":
        learn.to_fp16()
    elif precision == "bf16":
        learn.to_bf16()
    if cuda:
        notes.append(f"{member.name}: {precision} on compute capability {capability[0]}.{capability[1]}")
    if member.channels_last and not cuda:
        notes.append(f"{member.name}: channels_last ignored on the CPU")
    elif cuda and (member.channels_last or (member.channels_last is None and has_batch_norm(learn.model))):
        learn.to_channelslast(use_amp=False)  # use_amp=True would add fp16 behind the precision chosen above
    if member.compile:
        notes += compile_model(learn, member.name)
    return notes


def compile_model(learn: Learner, name: str) -> list[str]:
    """`torch.compile` the model in place (weight names unchanged, so checkpoints and exports load as before),
    compiling now on one batch so that a failure shows before training; on failure the model stays as it was
    and the note says why."""
    try:
        learn.model.compile()
        images = learn.dls.train.one_batch()[0][:2]
        was_training = learn.model.training
        with torch.no_grad():
            learn.model.eval()(images)
        learn.model.train(was_training)
    except Exception as error:  # dynamo and inductor raise many types; any failure means: run uncompiled
        learn.model._compiled_call_impl = None  # what nn.Module.compile set: back to the plain forward
        return [f"{name}: torch.compile failed ({one_line(error)}); trained without compiling"]
    return [f"{name}: compiled with torch.compile"]
