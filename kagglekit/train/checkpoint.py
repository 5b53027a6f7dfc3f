"""What a member leaves on disk: a checkpoint after every epoch (so a killed run resumes), its per-epoch history,
and finally its weights as safetensors with a JSON description (no pickles)."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from fastai.callback.core import Callback
from fastai.learner import Learner, Recorder, load_model, save_model
from safetensors.torch import save_model as save_safetensors

from kagglekit._io import atomic_write, write_json
from kagglekit.recipe import Member
from kagglekit.train.distributed import is_main_process
from kagglekit.train.heads import Head
from kagglekit.train.learner import normalization
from kagglekit.train.loaders import cache_settings

CHECKPOINT_STATE, CHECKPOINT_WEIGHTS = "checkpoint.json", "checkpoint.pth"


@dataclass
class ResumeState:
    """How far an interrupted member got: the last completed (phase, epoch) and the history until then."""

    phase: int = -1
    epoch: int = -1
    history: list[dict] = field(default_factory=list)

    def done(self, phase: int, epochs: int) -> bool:
        """Whether phase `phase` (of `epochs` epochs) was completed before the interruption."""
        return phase < self.phase or (phase == self.phase and self.epoch + 1 >= epochs)

    def start_epoch(self, phase: int) -> int:
        """The first epoch of `phase` still to train."""
        return self.epoch + 1 if phase == self.phase else 0


class EpochCheckpoint(Callback):
    """Saves weights, optimizer state and the history so far after every epoch, so a killed run resumes."""

    order = Recorder.order + 1

    def __init__(self, folder: Path, phase: int, earlier: list[dict], start: int):
        self.folder, self.phase, self.earlier, self.start = folder, phase, earlier, start

    def after_epoch(self) -> None:
        if self.epoch < self.start or not is_main_process():  # an epoch skipped on resume; another rank
            return
        atomic_write(self.folder / CHECKPOINT_WEIGHTS, self._save_weights)
        done = history(self.learn, self.phase, self.start)
        state = {"phase": self.phase, "epoch": self.epoch, "history": self.earlier + done}
        write_json(self.folder / CHECKPOINT_STATE, state)

    def _save_weights(self, path: Path) -> None:
        with path.open("wb") as file:  # a file object: torch names the archive inside it "archive", whatever `path`
            save_model(file, self.learn.model, self.learn.opt, with_opt=True)


def resume(learn: Learner, folder: Path) -> ResumeState:
    """Load the checkpoint in `folder` into `learn` (weights and optimizer) and say how far it got."""
    path = folder / CHECKPOINT_STATE
    if not path.is_file():
        return ResumeState()
    state = json.loads(path.read_text())
    learn.create_opt()
    load_model(folder / CHECKPOINT_WEIGHTS, learn.model, learn.opt, with_opt=True, device=learn.dls.device)
    return ResumeState(state["phase"], state["epoch"], state["history"])


def clear_checkpoint(out_dir: Path) -> None:
    """Drop the resume checkpoint once the member's predictions are saved."""
    for leftover in (CHECKPOINT_WEIGHTS, CHECKPOINT_STATE):
        (out_dir / leftover).unlink(missing_ok=True)


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
            "heads": [h.to_dict() for h in heads],
            "channels": channels,
            "size": list(member.image_size),  # what it predicts at: the last stage's size and resize method
            "resize": member.stage_list[-1].resize,
            "normalization": normalization(learn),
            "image_cache": cache_settings(learn.dls),  # how the inputs were cached: predict caches new images alike
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
