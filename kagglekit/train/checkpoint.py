"""What a member leaves on disk: a checkpoint after every epoch (so a killed run resumes), its per-epoch history,
and finally its weights as safetensors with a JSON description (no pickles)."""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import shutil
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import pandas as pd
import torch
from fastai.callback.core import Callback
from fastai.learner import Learner, Recorder
from fastai.torch_core import get_model
from fastcore.foundation import L
from safetensors.torch import save_model as save_safetensors

from kagglekit._io import atomic_write, write_json
from kagglekit.recipe import Member
from kagglekit.train.averaging import POOL
from kagglekit.train.distributed import is_main_process
from kagglekit.train.heads import Head
from kagglekit.train.learner import normalization
from kagglekit.train.loaders import cache_settings

log = logging.getLogger(__name__)

CHECKPOINT = "checkpoint.pth"
OLD_CHECKPOINT_STATE = "checkpoint.json"  # earlier versions kept the state beside the weights, in a second file
FORMAT = 2


class Stateful(Protocol):
    """What a checkpoint carries besides the model and optimizer (the weights' moving average, the averaging pool)."""

    def state_dict(self) -> dict: ...

    def load_state_dict(self, state: dict) -> None: ...


@dataclass
class ResumeState:
    """How far an interrupted member got: the last completed (phase, epoch), the history until then, the random
    generators' states at that moment, and notes on a checkpoint that could not be used."""

    phase: int = -1
    epoch: int = -1
    history: list[dict] = field(default_factory=list)
    rng: dict | None = None
    opt: dict | None = None  # the optimizer's state, for `load_optimizer` once the resumed phase has (un)frozen
    notes: list[str] = field(default_factory=list)

    def done(self, phase: int, epochs: int) -> bool:
        """Whether phase `phase` (of `epochs` epochs) was completed before the interruption."""
        return phase < self.phase or (phase == self.phase and self.epoch + 1 >= epochs)

    def start_epoch(self, phase: int) -> int:
        """The first epoch of `phase` still to train."""
        return self.epoch + 1 if phase == self.phase else 0


def training_config(
    member: Member,
    seed: int,
    heads: Sequence[Head],
    train: pd.DataFrame,
    is_valid: pd.Series,
    channels: int,
    weights: np.ndarray | None = None,
) -> dict:
    """Everything that decides a member's weights: its settings (not its ensemble `weight`), the seed, heads, the
    training and validation rows, input channels and sampling weights. A checkpoint resumes only the same."""
    rows = "\n".join(f"{i}:{int(v)}" for i, v in zip(train["id"].astype(str), is_valid, strict=True))
    config = {
        "member": {k: v for k, v in asdict(member).items() if k != "weight"},
        "seed": seed,
        "heads": [h.to_dict() for h in heads],
        "channels": channels,
        "rows": hashlib.sha256(rows.encode()).hexdigest(),
        "sampling_weights": None if weights is None else hashlib.sha256(np.asarray(weights).tobytes()).hexdigest(),
    }
    return json.loads(json.dumps(config))  # tuples as lists: compares equal with what a checkpoint loads


def rng_state(loader: Any) -> dict:
    """The random generators training draws from: torch (augmentation), numpy (mixing, weighted sampling),
    Python's (fastai's random transforms) and the training loader's own (its shuffle)."""
    name, keys, position, has_gauss, gauss = np.random.get_state()
    state = {
        "torch": torch.get_rng_state(),
        "numpy": [name, torch.from_numpy(keys.astype(np.int64)), position, has_gauss, gauss],
        "python": random.getstate(),
        "loader": loader.rng.getstate(),
    }
    if torch.cuda.is_available():
        state["cuda"] = torch.cuda.get_rng_state_all()
    return state


def restore_rng(state: dict, loader: Any | None) -> None:
    """Set the generators back to `state` (the training loader's too, when given)."""
    torch.set_rng_state(state["torch"])
    name, keys, position, has_gauss, gauss = state["numpy"]
    np.random.set_state((name, keys.numpy().astype(np.uint32), position, has_gauss, gauss))
    random.setstate(state["python"])
    if loader is not None:
        loader.rng = random.Random()
        loader.rng.setstate(state["loader"])
    if "cuda" in state and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])


class EpochCheckpoint(Callback):
    """After every epoch, one file holding everything a resumed run needs: weights, optimizer state, the history,
    the random generators, the configuration and the extra `parts` (EMA, averaging pool). It replaces the previous
    file atomically, so a kill leaves the old checkpoint or the new one, never half of one or a mismatched pair."""

    order = Recorder.order + 2  # after the recorder (history) and the averaging pool (which offers this epoch)

    def __init__(self, folder: Path, phase: int, earlier: list[dict], start: int, config: dict,
                 parts: Mapping[str, Stateful] | None = None):  # fmt: skip
        self.folder, self.phase, self.earlier, self.start = folder, phase, earlier, start
        self.config, self.parts = config, dict(parts or {})

    def after_epoch(self) -> None:
        if self.epoch < self.start or not is_main_process():  # an epoch skipped on resume; another rank
            return
        state = {
            "format": FORMAT,
            "config": self.config,
            "phase": self.phase,
            "epoch": self.epoch,
            "history": self.earlier + history(self.learn, self.phase, self.start),
            "model": get_model(self.learn.model).state_dict(),
            "opt": self.learn.opt.state_dict(),
            "rng": rng_state(self.learn.dls.train),
            "parts": {name: part.state_dict() for name, part in self.parts.items()},
        }
        atomic_write(self.folder / CHECKPOINT, lambda path: _save(_plain(state), path))
        if "averaging" in self.parts:
            self.parts["averaging"].prune()  # files of epochs this checkpoint no longer keeps


def _plain(value: Any) -> Any:
    """`value` in the types `torch.load(weights_only=True)` accepts: fastcore's `L` as a list, numpy scalars (the
    one-cycle scheduler's learning rates) as Python numbers."""
    if isinstance(value, dict):
        return {k: _plain(v) for k, v in value.items()}
    if isinstance(value, (list, L)):
        return [_plain(v) for v in value]
    if isinstance(value, tuple):
        return tuple(_plain(v) for v in value)
    return value.item() if isinstance(value, np.generic) else value


def _save(state: dict, path: Path) -> None:
    with path.open("wb") as file:  # a file object: torch names the archive inside it "archive", whatever `path`
        torch.save(state, file)


def _set_aside(path: Path, why: str) -> Path:
    """Keep an unusable checkpoint under another name (replacing an earlier one set aside for the same reason)."""
    aside = path.with_name(f"{path.stem}-{why}{path.suffix}")
    os.replace(path, aside)
    return aside


_CONFIG_PARTS = {"seed": "seed", "heads": "heads", "channels": "input channels", "rows": "training/validation rows",
                 "sampling_weights": "sampling weights"}  # fmt: skip


def _changes(saved: dict, config: dict) -> str:
    """What differs between two training configurations, e.g. `lr 0.003 -> 0.01, arch 'resnet10t' -> 'resnet18'`."""
    old, new = saved.get("member", {}), config["member"]
    changed = [f"{k} {old.get(k)!r} -> {v!r}" for k, v in new.items() if old.get(k) != v]
    changed += [label for key, label in _CONFIG_PARTS.items() if saved.get(key) != config.get(key)]
    return ", ".join(changed)


def resume(learn: Learner, folder: Path, config: dict, parts: Mapping[str, Stateful] | None = None) -> ResumeState:
    """Load the checkpoint in `folder` into `learn`'s model and `parts`; say how far it got.

    A checkpoint of another configuration (`training_config`) or one that cannot be read is set aside as
    `checkpoint-other-config.pth` / `checkpoint-unreadable.pth` and training starts from the first epoch; the
    returned notes say so.
    """
    path, name = Path(folder) / CHECKPOINT, config["member"]["name"]
    restart = "training starts from the first epoch"
    old_state = Path(folder) / OLD_CHECKPOINT_STATE
    if old_state.is_file():  # an earlier version's pair of files: not resumable here
        old_state.unlink()
        aside = _set_aside(path, "old-format") if path.is_file() else old_state
        return ResumeState(notes=[f"{name}: the checkpoint in {folder} is an earlier kagglekit version's (set aside as "
                                  f"{aside.name}); {restart}"])  # fmt: skip
    if not path.is_file():
        return ResumeState()
    try:
        saved = torch.load(path, map_location=learn.dls.device, weights_only=True)
        if saved.get("format") != FORMAT:
            raise ValueError(f"format {saved.get('format')}, expected {FORMAT}")
    except Exception as error:  # a torn or damaged file: torch raises several kinds (zip, pickle, EOF, runtime)
        aside = _set_aside(path, "unreadable")
        reason = (str(error).strip().splitlines() or [""])[0][:160]
        return ResumeState(notes=[f"{name}: the checkpoint in {folder} could not be read ({type(error).__name__}: "
                                  f"{reason}); kept as {aside.name}, {restart}"])  # fmt: skip
    if saved["config"] != config:
        aside = _set_aside(path, "other-config")
        changes = _changes(saved["config"], config)
        return ResumeState(notes=[f"{name}: the checkpoint in {folder} was made with another configuration "
                                  f"({changes}); kept as {aside.name}, {restart}"])  # fmt: skip
    get_model(learn.model).load_state_dict(saved["model"])
    for part_name, part in (parts or {}).items():
        part.load_state_dict(saved["parts"][part_name])
    return ResumeState(saved["phase"], saved["epoch"], saved["history"], saved["rng"], saved["opt"])


def load_optimizer(learn: Learner, state: dict) -> None:
    """The optimizer's state from a checkpoint. Only after `freeze`/`unfreeze`: fastai's `freeze_to` clears it."""
    learn.opt.load_state_dict({"state": state["state"], "hypers": L(state["hypers"])})


def clear_checkpoint(out_dir: Path) -> None:
    """Drop the resume checkpoint (and the epochs kept for averaging) once the member's predictions are saved."""
    for leftover in (CHECKPOINT, OLD_CHECKPOINT_STATE):
        (out_dir / leftover).unlink(missing_ok=True)
    shutil.rmtree(out_dir / POOL, ignore_errors=True)


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
    averaged: dict | None = None,
) -> None:
    """Weights as safetensors plus a JSON description: everything needed to predict again, no pickles.

    `learn.model` holds the final weights (the moving average with `ema`, the averaged epochs with
    `average_checkpoints`); `averaged` is `CheckpointPool.average`'s report: which epochs and their validation.
    """
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
            "averaged": averaged,
            "train_seconds": round(seconds, 2),
            "notes": list(notes),
        },
    )


def _accuracies(row: dict) -> dict[str, float]:
    return {k.removesuffix("_accuracy"): float(v) for k, v in row.items() if k.endswith("_accuracy")}


def history_scores(part_dirs: Sequence[Path]) -> tuple[dict[str, float], dict[str, float], float]:
    """Validation accuracy per task (no TTA) of the saved models, averaged over a member's parts; the last
    epoch's, when the saved models average several epochs (else empty); and the total train time in seconds."""
    saved = [json.loads((d / "member.json").read_text()) for d in part_dirs]
    lasts = [_accuracies(s["history"][-1]) for s in saved if s["history"]]
    finals = [_accuracies(s["averaged"]) if s.get("averaged") else last for s, last in zip(saved, lasts, strict=False)]

    def mean(rows: list[dict[str, float]]) -> dict[str, float]:
        return {task: float(np.mean([row[task] for row in rows])) for task in (rows[0] if rows else {})}

    averaged = any(s.get("averaged") for s in saved)
    return mean(finals), mean(lasts) if averaged else {}, float(sum(s["train_seconds"] for s in saved))
