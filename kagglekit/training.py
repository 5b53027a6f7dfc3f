"""Training one ensemble member: data loaders, a timm body with one head per task, and the fit.

Every member is a fastai `Learner` over a timm architecture. Its output is the concatenation of one block
of logits per task; `TaskLoss` knows the blocks, so multi-task and single-task training are the same code.
"""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import fastai.callback.schedule  # noqa: F401  (adds Learner.fit_one_cycle and fine_tune)
import pandas as pd
import torch
import torch.nn.functional as F
from fastai.callback.training import GradientAccumulation
from fastai.data.block import CategoryBlock, ColReader, ColSplitter, DataBlock, MultiCategoryBlock
from fastai.learner import Learner
from fastai.torch_core import set_seed
from fastai.vision.augment import Resize, ResizeMethod
from fastai.vision.core import PILImage
from fastai.vision.data import ImageBlock
from fastai.vision.learner import vision_learner
from safetensors.torch import save_model

from kagglekit.competition import Competition
from kagglekit.files import write_json
from kagglekit.images import input_channels, open_grey16
from kagglekit.recipe import Member, RecipeError
from kagglekit.transforms import batch_transforms

log = logging.getLogger(__name__)

_RESIZE = {"squish": ResizeMethod.Squish, "crop": ResizeMethod.Crop, "pad": ResizeMethod.Pad}


@dataclass(frozen=True)
class Head:
    """The block of outputs that predicts one task."""

    task: str
    column: str
    kind: str  # single | multi
    vocab: tuple[str, ...]
    weight: float
    start: int

    @property
    def slice(self) -> slice:
        return slice(self.start, self.start + len(self.vocab))


def make_heads(competition: Competition, vocab: dict[str, list[str]], member: Member) -> list[Head]:
    """The member's heads: its `tasks` weights, or the competition's target task alone."""
    weights = member.tasks or {competition.target_task: 1.0}
    unknown = sorted(set(weights) - set(competition.tasks))
    if unknown:
        raise RecipeError(
            f"member {member.name!r}: unknown task(s) {', '.join(unknown)}; "
            f"{competition.name} has {', '.join(competition.tasks)}."
        )
    if competition.target_task not in weights:
        raise RecipeError(f"member {member.name!r}: tasks must include the target {competition.target_task!r}.")
    heads, start = [], 0
    for name in competition.tasks:  # a fixed order, whatever order the recipe lists them in
        if name in weights:
            task = competition.tasks[name]
            heads.append(Head(name, task.column, task.kind, tuple(vocab[name]), weights[name], start))
            start += len(vocab[name])
    return heads


class TaskLoss:
    """Weighted sum of per-task losses: cross-entropy for single-label, BCE for multi-label heads."""

    def __init__(self, heads: Sequence[Head]):
        self.heads = list(heads)

    def __call__(self, output: torch.Tensor, *targets: torch.Tensor) -> torch.Tensor:
        total = output.new_zeros(())
        for head, target in zip(self.heads, targets, strict=True):
            logits, target = output[:, head.slice].float(), target.as_subclass(torch.Tensor)
            if head.kind == "single":
                loss = F.cross_entropy(logits, target.long())
            else:
                loss = F.binary_cross_entropy_with_logits(logits, target.float())
            total = total + head.weight * loss
        return total

    def activation(self, output: torch.Tensor) -> torch.Tensor:
        """Probabilities per head, concatenated like the logits (fastai's get_preds calls this)."""
        parts = [
            output[:, h.slice].float().softmax(1) if h.kind == "single" else output[:, h.slice].float().sigmoid()
            for h in self.heads
        ]
        return torch.cat(parts, dim=1)


def _task_accuracy(head: Head, index: int):
    def metric(output: torch.Tensor, *targets: torch.Tensor) -> torch.Tensor:
        logits, target = output[:, head.slice], targets[index].as_subclass(torch.Tensor)
        if head.kind == "single":
            return (logits.argmax(1) == target).float().mean()
        return ((logits.sigmoid() > 0.5) == target.bool()).float().mean()

    metric.__name__ = f"{head.task}_accuracy"
    return metric


class PILImageGrey16(PILImage):
    """A cached 16-bit DICOM PNG as one float channel (see `kagglekit.images.open_grey16`)."""

    @classmethod
    def create(cls, fn, **kwargs):
        return cls(open_grey16(fn))


def make_dataloaders(
    train: pd.DataFrame,
    is_valid: pd.Series,
    heads: Sequence[Head],
    member: Member,
    num_workers: int | None = None,
    channels: int = 3,
):
    """fastai DataLoaders over the item table: one image input, one target per head."""
    blocks = [ImageBlock(cls=PILImageGrey16) if channels == 1 else ImageBlock]
    getters = [ColReader("path")]
    for head in heads:
        if head.kind == "single":
            blocks.append(CategoryBlock(vocab=list(head.vocab)))
            getters.append(ColReader(head.column))
        else:
            blocks.append(MultiCategoryBlock(vocab=list(head.vocab)))
            getters.append(ColReader(head.column, label_delim=" "))
    block = DataBlock(
        blocks=blocks,
        getters=getters,
        n_inp=1,
        splitter=ColSplitter("is_valid"),
        item_tfms=Resize(member.image_size, method=_RESIZE[member.resize]),
        batch_tfms=batch_transforms(member.aug, member.image_size),
    )
    frame = train.assign(is_valid=is_valid.to_numpy())
    kwargs = {} if num_workers is None else {"num_workers": num_workers}
    return block.dataloaders(frame, bs=member.step_batch_size, **kwargs)


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


def create_learner(dls, member: Member, heads: Sequence[Head], channels: int = 3) -> Learner:
    loss = TaskLoss(heads)
    metrics = [_task_accuracy(head, i) for i, head in enumerate(heads)]
    n_out = sum(len(h.vocab) for h in heads)
    return vision_learner(
        dls, member.arch, pretrained=member.pretrained, n_out=n_out, n_in=channels, loss_func=loss, metrics=metrics
    )


def train_member(
    member: Member,
    competition: Competition,
    train: pd.DataFrame,
    splits: pd.DataFrame,
    vocab: dict[str, list[str]],
    out_dir: Path,
    seed: int = 42,
    num_workers: int | None = None,
) -> Learner:
    """Train one member on the rows of `splits` not marked `is_valid`, and save its weights and history."""
    set_seed(seed, reproducible=True)
    heads = make_heads(competition, vocab, member)
    is_valid = train["id"].map(splits.set_index("id")["is_valid"]).astype(bool)
    n_train = int((~is_valid).sum())
    callbacks = accumulation_callbacks(member, n_train)
    channels = input_channels(competition)
    dls = make_dataloaders(train, is_valid, heads, member, num_workers, channels)
    learn = create_learner(dls, member, heads, channels)
    log.info("Training %s (%s, %d train / %d valid images)", member.name, member.arch, n_train, int(is_valid.sum()))
    started = time.perf_counter()
    if member.pretrained:
        learn.fine_tune(member.epochs, member.lr, cbs=callbacks)
    else:
        learn.fit_one_cycle(member.epochs, member.lr, cbs=callbacks)
    seconds = time.perf_counter() - started
    save_member(learn, member, heads, out_dir, history(learn), seconds)
    return learn


def history(learn: Learner) -> list[dict[str, float]]:
    names = [n for n in learn.recorder.metric_names if n not in ("epoch", "time")]
    return [
        {"epoch": epoch, **{n: float(v) for n, v in zip(names, values, strict=False)}}
        for epoch, values in enumerate(learn.recorder.values)
    ]


def save_member(
    learn: Learner, member: Member, heads: Sequence[Head], out_dir: Path, epochs: list[dict], seconds: float
) -> None:
    """Weights as safetensors plus a JSON description: everything needed to predict again, no pickles."""
    out_dir.mkdir(parents=True, exist_ok=True)
    save_model(learn.model, str(out_dir / "model.safetensors"))
    write_json(
        out_dir / "member.json",
        {
            "member": {k: getattr(member, k) for k in member.__dataclass_fields__},
            "heads": [
                {
                    "task": h.task,
                    "column": h.column,
                    "kind": h.kind,
                    "vocab": list(h.vocab),
                    "weight": h.weight,
                }
                for h in heads
            ],
            "history": epochs,
            "train_seconds": round(seconds, 2),
        },
    )


def history_score(out_dir: Path, task: str) -> tuple[float | None, float]:
    """The saved member's last-epoch validation accuracy on `task` (no TTA) and its training time."""
    saved = json.loads((out_dir / "member.json").read_text())
    last = saved["history"][-1] if saved["history"] else {}
    return last.get(f"{task}_accuracy"), saved["train_seconds"]
