"""Training one ensemble member: loaders, a timm body with one head per task, and its schedule, resumable."""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd
from fastai.callback.core import Callback
from fastai.learner import Learner
from fastai.torch_core import get_model, set_seed

from kagglekit.competition import Competition
from kagglekit.data.images import input_channels
from kagglekit.data.splits import valid_mask
from kagglekit.recipe import Member
from kagglekit.train.averaging import CheckpointPool
from kagglekit.train.batchnorm import EpochBatchNorm
from kagglekit.train.checkpoint import (
    EpochCheckpoint,
    ResumeState,
    history,
    load_optimizer,
    restore_rng,
    resume,
    save_member,
    training_config,
)
from kagglekit.train.distributed import distributed, is_main_process, main_process_alone
from kagglekit.train.ema import WeightEma
from kagglekit.train.heads import Head, make_heads
from kagglekit.train.learner import apply_precision, create_learner, replace_loaders
from kagglekit.train.loaders import member_dataloaders
from kagglekit.train.lr_find import loss_callbacks, resolve_lr
from kagglekit.train.mixing import Mixing
from kagglekit.train.progress import show_progress
from kagglekit.train.schedule import Phase, accumulation_callbacks, schedule

log = logging.getLogger(__name__)


class _Regularisers:
    """A member's regularisers that span its phases: the weights' moving average (`ema`), the epochs kept for
    `average_checkpoints`, and mixup/cutmix/label smoothing, as the callbacks of each phase."""

    def __init__(self, member: Member, heads: Sequence[Head], learn: Learner, out_dir: Path, phases: list[Phase]):
        self.member, self.heads, self.learn, self.phases = member, heads, learn, phases
        self.ema = WeightEma(learn.model, member.ema) if member.ema else None
        k, last = member.average_checkpoints, len(phases) - 1
        self.pool = CheckpointPool(out_dir, k, last, member.average_mode) if k else None
        self.parts = {name: part for name, part in (("ema", self.ema), ("averaging", self.pool)) if part is not None}

    def validated_weights(self) -> dict:
        """The weights each validation sees: the moving average, or the model's own."""
        return self.ema.average.module.state_dict() if self.ema else get_model(self.learn.model).state_dict()

    def callbacks(self, number: int, start: int) -> list[Callback]:
        member, first_epoch = self.member, sum(p.epochs for p in self.phases[:number])
        found: list[Callback] = []
        if member.mixes or member.label_smoothing:
            total = sum(p.epochs for p in self.phases)
            found.append(Mixing(member, self.heads, first_epoch, mix_until=total - member.mix_off_epochs))
        if self.ema:
            found.append(self.ema.callback())
        if self.pool:
            found.append(self.pool.callback(number, start, self.validated_weights))
        return found

    def finish(self) -> dict | None:
        """Put the final weights into the model: the moving average, then the averaged epochs (validated)."""
        if self.ema:
            self.ema.copy_to(self.learn.model)
        if not (self.pool and self.pool.kept and is_main_process()):
            return None
        with main_process_alone():
            averaged = self.pool.average(self.learn)
        scores = ", ".join(f"{k} {v:.4g}" for k, v in averaged.items() if isinstance(v, float))
        epochs = ", ".join(f"{c['epoch'] + 1}" for c in averaged["epochs"])
        log.info("%s: weights of epochs %s averaged (%s): %s", self.member.name, epochs, averaged["mode"], scores)
        return averaged


def _enter_phase(learn: Learner, state: ResumeState, phases: list[Phase], number: int, stage: int, loaders) -> int:
    """Set up phase `number`: its stage's loaders (new ones when the stage changes), the body frozen or not, and,
    in the first phase a resumed run trains, the random generators and optimizer as the uninterrupted run had
    them there. Returns the stage now loaded."""
    phase = phases[number]
    continuing = state.rng is not None and phases[state.phase].stage == phase.stage
    if state.rng is not None and not continuing:
        restore_rng(state.rng, None)  # the uninterrupted run made this stage's loaders from this state
    if phase.stage != stage:
        stage = phase.stage
        replace_loaders(learn, loaders(stage))
    if continuing:
        restore_rng(state.rng, learn.dls.train)  # its loader had shuffled this far
    # No gradients left from the previous phase: fastai steps every parameter that has one, so a body frozen for a
    # head re-fit would still shrink by weight decay after an unfrozen phase (and differ from a resumed run's).
    learn.model.zero_grad(set_to_none=True)
    if phase.frozen:
        learn.freeze()  # fastai's freeze_to clears the optimizer's state, as every new phase should
    else:
        learn.unfreeze()
    if state.opt is not None and state.phase == number:  # resumed mid-phase: the moments it had
        load_optimizer(learn, state.opt)
    state.rng = state.opt = None
    return stage


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
    cbs: Sequence[Callback] = (),
) -> Learner:
    """Train one member on the rows of `train` (an item table) not held out by `is_valid` (a `make_splits` frame,
    or booleans aligned with `train`), and save its weights and history in `out_dir`.

    The member's schedule (progressive stages, head re-fits) runs phase by phase with a checkpoint after every
    epoch in `out_dir`; if one of the same configuration is there, training resumes after its last completed
    epoch and continues exactly as the uninterrupted run would have (another configuration's, or an unreadable
    one, is set aside with a note). `weights` (one per row) samples training rows in proportion to them; `cbs` are
    extra fastai callbacks for every fit. The returned learner holds the final weights (the moving average with
    `ema`, the averaged epochs with `average_checkpoints`). Raises `RecipeError` for a member the data cannot train.
    """
    set_seed(seed, reproducible=True)
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    heads = make_heads(competition, vocab, member)
    is_valid = valid_mask(is_valid, train)
    n_train = int((~is_valid).sum())
    accumulation = accumulation_callbacks(member, n_train)
    channels = input_channels(competition)

    def loaders(stage: int):
        return member_dataloaders(member, competition, train, is_valid, vocab, stage, num_workers, weights)

    learn = create_learner(loaders(0), member, heads, channels)
    show_progress(learn, member.name)
    notes = apply_precision(learn, member)
    for note in notes:
        log.info(note)
    config = training_config(member, seed, heads, train, is_valid, channels, weights)  # lr "find" as written
    member = resolve_lr(learn, member, out_dir, [*accumulation, *loss_callbacks(member, heads)], config)  # lr "find"
    phases = schedule(member)
    regularisers = _Regularisers(member, heads, learn, out_dir, phases)
    state = resume(learn, out_dir, config, regularisers.parts)
    for note in state.notes:
        log.warning(note)
    notes += state.notes
    if state.phase >= 0:
        log.info("Resuming %s after epoch %d of phase %d", member.name, state.epoch + 1, state.phase + 1)
    log.info("Training %s (%s, %d train / %d valid images)", member.name, member.arch, n_train, int(is_valid.sum()))
    started, stage, earlier = time.perf_counter(), 0, state.history
    with distributed(learn):  # data-parallel over all processes under accelerate/torchrun
        for number, phase in enumerate(phases):
            if state.done(number, phase.epochs):
                continue
            stage = _enter_phase(learn, state, phases, number, stage, loaders)
            start = state.start_epoch(number)
            checkpointer = EpochCheckpoint(out_dir, number, earlier, start, config, regularisers.parts)
            callbacks = [*accumulation, EpochBatchNorm(), *regularisers.callbacks(number, start), checkpointer, *cbs]
            learn.fit_one_cycle(phase.epochs, phase.lr, pct_start=phase.pct_start, div=phase.div, cbs=callbacks,
                                start_epoch=start)  # fmt: skip
            earlier = earlier + history(learn, number, start)
    averaged = regularisers.finish()
    if is_main_process():
        save_member(learn, member, heads, out_dir, earlier, time.perf_counter() - started, channels, notes, averaged)
    return learn
