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

# Imported for the Learner methods they add: to_channelslast, to_fp16/to_bf16, fit_one_cycle.
import fastai.callback.channelslast
import fastai.callback.fp16
import fastai.callback.schedule  # noqa: F401
import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from fastai.callback.core import Callback
from fastai.callback.training import GradientAccumulation
from fastai.data.block import CategoryBlock, ColReader, ColSplitter, DataBlock, MultiCategoryBlock
from fastai.data.transforms import Normalize
from fastai.learner import Learner, Recorder, load_model, save_model
from fastai.torch_core import set_seed
from fastai.vision.augment import Resize, ResizeMethod
from fastai.vision.core import PILImage
from fastai.vision.data import ImageBlock
from fastai.vision.learner import vision_learner
from safetensors.torch import save_model as save_safetensors

from kagglekit.competition import Competition
from kagglekit.distributed import distributed, is_main_process
from kagglekit.files import write_json
from kagglekit.images import input_channels, open_grey16
from kagglekit.recipe import Member, RecipeError, Stage
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
    stage: Stage | None = None,
    weights: np.ndarray | None = None,
):
    """fastai DataLoaders over the item table: one image input, one target per head.

    `stage` sets the size and resize method (default: the member's last stage); `weights` (one per row of
    `train`) makes the training loader sample rows in proportion to them.
    """
    stage = stage or member.stage_list[-1]
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
        item_tfms=Resize(stage.size, method=_RESIZE[stage.resize]),
        batch_tfms=batch_transforms(member.aug, stage.size),
    )
    frame = train.assign(is_valid=is_valid.to_numpy())
    if num_workers is None and not torch.cuda.is_available():
        num_workers = 0  # on the CPU, loader processes fight the model's threads for the cores (5x slower on 2)
    kwargs = {} if num_workers is None else {"num_workers": num_workers}
    if weights is not None:
        return block.weighted_dataloaders(
            frame, wgts=np.asarray(weights, dtype=float), bs=member.step_batch_size, **kwargs
        )
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


def weights_file(pretrained: str, arch: str) -> Path:
    """A local weights file for `arch`: the file itself, or the first match in a folder (an attached dataset)."""
    path = Path(pretrained).expanduser()
    if path.is_dir():
        names = [f"{arch}.safetensors", f"{arch}/model.safetensors", f"{arch}/pytorch_model.bin", "model.safetensors"]
        found = next((path / n for n in names if (path / n).is_file()), None)
        if found is None:
            raise RecipeError(f"pretrained folder {path} has none of {', '.join(names)} for {arch}.")
        return found
    if not path.is_file():
        raise RecipeError(f"pretrained weights {path} do not exist (for {arch}).")
    return path


def create_learner(dls, member: Member, heads: Sequence[Head], channels: int = 3) -> Learner:
    """A fastai learner over a timm body. Weights from a file still get timm's normalisation statistics."""
    loss = TaskLoss(heads)
    metrics = [_task_accuracy(head, i) for i, head in enumerate(heads)]
    n_out = sum(len(h.vocab) for h in heads)
    extra = {}
    if isinstance(member.pretrained, str):
        file = weights_file(member.pretrained, member.arch)
        # custom_load=False: older timm sends augreg ViT files to its .npz loader otherwise (timm issue #2061)
        extra["pretrained_cfg_overlay"] = {"file": str(file), "custom_load": file.suffix == ".npz"}
    pretrained = bool(member.pretrained)
    learn = vision_learner(
        dls, member.arch, pretrained=pretrained, n_out=n_out, n_in=channels, loss_func=loss, metrics=metrics, **extra
    )
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


class EpochCheckpoint(Callback):
    """Saves weights, optimizer state and the history so far after every epoch, so a killed run resumes."""

    order = Recorder.order + 1

    def __init__(self, folder: Path, phase: int, earlier: list[dict], start: int):
        self.folder, self.phase, self.earlier, self.start = folder, phase, earlier, start

    def after_epoch(self) -> None:
        if self.epoch < self.start or not is_main_process():  # an epoch skipped on resume; another rank
            return
        save_model(self.folder / "checkpoint.pth", self.learn.model, self.learn.opt, with_opt=True)
        done = history(self.learn, self.phase, self.start)
        state = {"phase": self.phase, "epoch": self.epoch, "history": self.earlier + done}
        write_json(self.folder / "checkpoint.json", state)


def sampling_weights(
    member: Member, train: pd.DataFrame, target: str, previous_losses: pd.Series | None
) -> np.ndarray | None:
    """Per-row sampling weights: none, inverse class frequency, or the previous member's per-item losses."""
    if member.sampling == "none":
        return None
    if member.sampling == "balanced":
        return (1.0 / train[target].map(train[target].value_counts())).to_numpy()
    if previous_losses is None:
        raise RecipeError(f"member {member.name!r}: sampling = 'loss' needs an earlier member to take losses from.")
    losses = train["id"].map(previous_losses).fillna(previous_losses.mean()).to_numpy()
    return losses + 1e-3 * losses.mean()  # a little weight for rows the previous member already fits


def train_member(
    member: Member,
    competition: Competition,
    train: pd.DataFrame,
    is_valid: pd.Series,
    vocab: dict[str, list[str]],
    out_dir: Path,
    seed: int = 42,
    num_workers: int | None = None,
    weights: np.ndarray | None = None,
) -> Learner:
    """Train one member on the rows where `is_valid` (aligned with `train`) is false; save weights and history.

    The member's schedule (progressive stages, head re-fits) runs phase by phase with a checkpoint after
    every epoch in `out_dir`; if one is there, training resumes after its last completed epoch.
    """
    set_seed(seed, reproducible=True)
    out_dir.mkdir(parents=True, exist_ok=True)
    heads = make_heads(competition, vocab, member)
    is_valid = pd.Series(np.asarray(is_valid, dtype=bool), index=train.index)
    n_train = int((~is_valid).sum())
    callbacks = accumulation_callbacks(member, n_train)
    channels = input_channels(competition)
    stages = member.stage_list
    loaders = [make_dataloaders(train, is_valid, heads, member, num_workers, channels, stages[0], weights)]
    learn = create_learner(loaders[0], member, heads, channels)
    notes = apply_precision(learn, member)
    for note in notes:
        log.info(note)

    done_phase, done_epoch, earlier = -1, -1, []
    checkpoint = out_dir / "checkpoint.json"
    if checkpoint.is_file():
        state = json.loads(checkpoint.read_text())
        done_phase, done_epoch, earlier = state["phase"], state["epoch"], state["history"]
        learn.create_opt()
        load_model(out_dir / "checkpoint.pth", learn.model, learn.opt, with_opt=True, device=learn.dls.device)
        log.info("Resuming %s after epoch %d of phase %d", member.name, done_epoch + 1, done_phase + 1)
    log.info("Training %s (%s, %d train / %d valid images)", member.name, member.arch, n_train, int(is_valid.sum()))
    started = time.perf_counter()
    phases = schedule(member)
    current_stage = 0
    with distributed(learn):  # data-parallel over all processes under accelerate/torchrun
        for number, phase in enumerate(phases):
            finished = number < done_phase or (number == done_phase and done_epoch + 1 >= phase.epochs)
            if finished:
                continue
            if phase.stage != current_stage:
                current_stage = phase.stage
                dls = make_dataloaders(
                    train, is_valid, heads, member, num_workers, channels, stages[phase.stage], weights
                )
                learn.dls = dls
            if phase.frozen:
                learn.freeze()
            else:
                learn.unfreeze()
            start = done_epoch + 1 if number == done_phase else 0
            checkpointer = EpochCheckpoint(out_dir, number, earlier, start)
            learn.fit_one_cycle(
                phase.epochs,
                phase.lr,
                pct_start=phase.pct_start,
                div=phase.div,
                cbs=[*callbacks, checkpointer],
                start_epoch=start,
            )
            earlier = earlier + history(learn, number, start)
    seconds = time.perf_counter() - started
    if is_main_process():
        save_member(learn, member, heads, out_dir, earlier, seconds, channels, notes)
    return learn


def history(learn: Learner, phase: int, start: int = 0) -> list[dict[str, float]]:
    """The recorder's per-epoch losses and metrics of the current fit, from epoch `start` on.

    On resume, fastai skips the first `start` epochs but still records a row for each; those are dropped.
    """
    names = [n for n in learn.recorder.metric_names if n not in ("epoch", "time")]
    return [
        {"phase": phase, "epoch": start + n, **{k: float(v) for k, v in zip(names, values, strict=False)}}
        for n, values in enumerate(learn.recorder.values[start:])
    ]


def save_member(
    learn: Learner,
    member: Member,
    heads: Sequence[Head],
    out_dir: Path,
    epochs: list[dict],
    seconds: float,
    channels: int = 3,
    notes: Sequence[str] = (),
) -> None:
    """Weights as safetensors plus a JSON description: everything needed to predict again, no pickles."""
    out_dir.mkdir(parents=True, exist_ok=True)
    save_safetensors(learn.model, str(out_dir / "model.safetensors"))
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
            "channels": channels,
            "size": list(member.image_size),  # what it predicts at: the last stage's size and resize method
            "resize": member.stage_list[-1].resize,
            "normalization": normalization(learn),
            "history": epochs,
            "train_seconds": round(seconds, 2),
            "notes": list(notes),
        },
    )


def history_scores(part_dirs: Sequence[Path]) -> tuple[dict[str, float], float]:
    """Last-epoch validation accuracy per task (no TTA), averaged over a member's parts, and total train time."""
    saved = [json.loads((d / "member.json").read_text()) for d in part_dirs]
    lasts = [s["history"][-1] for s in saved if s["history"]]
    tasks = [k.removesuffix("_accuracy") for k in (lasts[0] if lasts else {}) if k.endswith("_accuracy")]
    scores = {t: float(np.mean([last[f"{t}_accuracy"] for last in lasts])) for t in tasks}
    return scores, float(sum(s["train_seconds"] for s in saved))


def clear_checkpoint(out_dir: Path) -> None:
    """Drop the resume checkpoint once the member's predictions are saved."""
    for leftover in ("checkpoint.pth", "checkpoint.json"):
        (out_dir / leftover).unlink(missing_ok=True)
