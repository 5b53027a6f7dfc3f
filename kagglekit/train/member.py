"""Training one ensemble member: loaders, a timm body with one head per task, and its schedule, resumable."""

from __future__ import annotations

import logging
import time
from pathlib import Path

import numpy as np
import pandas as pd
from fastai.learner import Learner
from fastai.torch_core import set_seed

from kagglekit.competition import Competition
from kagglekit.data.images import input_channels
from kagglekit.data.splits import valid_mask
from kagglekit.recipe import Member
from kagglekit.train.checkpoint import EpochCheckpoint, history, resume, save_member
from kagglekit.train.distributed import distributed, is_main_process
from kagglekit.train.heads import make_heads
from kagglekit.train.learner import apply_precision, create_learner
from kagglekit.train.loaders import make_dataloaders
from kagglekit.train.lr_find import resolve_lr
from kagglekit.train.progress import show_progress
from kagglekit.train.schedule import accumulation_callbacks, schedule

log = logging.getLogger(__name__)


def train_member(
    member: Member,
    competition: Competition,
    train: pd.DataFrame,
    is_valid: pd.DataFrame | pd.Series | np.ndarray,
    vocab: dict[str, list[str]],
    out_dir: Path,
    seed: int = 42,
    num_workers: int | None = None,
    weights: np.ndarray | None = None,
) -> Learner:
    """Train one member on the rows of `train` (an item table) not held out by `is_valid` (a `make_splits` frame,
    or booleans aligned with `train`), and save its weights and history in `out_dir`.

    The member's schedule (progressive stages, head re-fits) runs phase by phase with a checkpoint after every
    epoch in `out_dir`; if one is there, training resumes after its last completed epoch. `weights` (one per row)
    samples training rows in proportion to them. Raises `RecipeError` for a member the data cannot train.
    """
    set_seed(seed, reproducible=True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    heads = make_heads(competition, vocab, member)
    is_valid = valid_mask(is_valid, train)
    n_train = int((~is_valid).sum())
    callbacks = accumulation_callbacks(member, n_train)
    channels, stages = input_channels(competition), member.stage_list

    def loaders(stage: int):
        return make_dataloaders(train, is_valid, heads, member, num_workers, channels, stages[stage], weights)

    learn = create_learner(loaders(0), member, heads, channels)
    show_progress(learn, member.name)
    notes = apply_precision(learn, member)
    for note in notes:
        log.info(note)
    member = resolve_lr(learn, member, out_dir, callbacks)  # lr = "find": fastai's lr_find on this fresh learner
    state = resume(learn, out_dir)
    if state.phase >= 0:
        log.info("Resuming %s after epoch %d of phase %d", member.name, state.epoch + 1, state.phase + 1)
    log.info("Training %s (%s, %d train / %d valid images)", member.name, member.arch, n_train, int(is_valid.sum()))
    started, current_stage, earlier = time.perf_counter(), 0, state.history
    with distributed(learn):  # data-parallel over all processes under accelerate/torchrun
        for number, phase in enumerate(schedule(member)):
            if state.done(number, phase.epochs):
                continue
            if phase.stage != current_stage:
                current_stage, learn.dls = phase.stage, loaders(phase.stage)
            if phase.frozen:
                learn.freeze()
            else:
                learn.unfreeze()
            start = state.start_epoch(number)
            checkpointer = EpochCheckpoint(out_dir, number, earlier, start)
            learn.fit_one_cycle(phase.epochs, phase.lr, pct_start=phase.pct_start, div=phase.div,
                                cbs=[*callbacks, checkpointer], start_epoch=start)  # fmt: skip
            earlier = earlier + history(learn, number, start)
    if is_main_process():
        save_member(learn, member, heads, out_dir, earlier, time.perf_counter() - started, channels, notes)
    return learn
