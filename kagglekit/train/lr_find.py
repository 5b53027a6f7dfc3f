"""The learning-rate finder: fastai's `lr_find` on a member's real loaders and learner (Leslie Smith's range test:
a mock training whose rate grows exponentially each batch, recording the smoothed training loss).

`kagglekit lr-find` shows the curve, its table and fastai's valley and slide suggestions; a recipe's
`lr = "find"` trains the member at the valley suggestion, saved beside the member (`lr_find.*`) so a resumed
run of the same configuration keeps the same rate. The test runs on the loss the member trains on: mixed and
smoothed targets for members with mixup/cutmix or label smoothing, with gradient accumulation.
"""

from __future__ import annotations

import json
import logging
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from fastai.callback.core import Callback
from fastai.callback.schedule import slide, valley
from fastai.learner import Learner
from fastai.torch_core import set_seed

from kagglekit._io import atomic_write, write_csv, write_json
from kagglekit.competition import Competition
from kagglekit.data.images import input_channels
from kagglekit.data.splits import valid_mask
from kagglekit.errors import RecipeError
from kagglekit.recipe import FIND, Member
from kagglekit.runs import config_key
from kagglekit.train.distributed import is_main_process, main_process_first
from kagglekit.train.heads import Head, make_heads
from kagglekit.train.learner import apply_precision, create_learner
from kagglekit.train.loaders import member_dataloaders
from kagglekit.train.mixing import Mixing
from kagglekit.train.progress import show_progress
from kagglekit.train.schedule import accumulation_callbacks, schedule

log = logging.getLogger(__name__)

FILES = {"table": "lr_find.csv", "plot": "lr_find.png", "suggestions": "lr_find.json"}
SLIDE_WINDOW = 15  # fastai's `slide` compares gradients this many points apart


@dataclass
class LRFinding:
    """A range test's curve and fastai's suggestions: `lrs[i]` is the rate of batch `i`, `losses[i]` fastai's
    smoothed training loss there (exponential moving average, beta 0.98); `valley` and `slide` are rates."""

    lrs: list[float]
    losses: list[float]
    valley: float
    slide: float
    member: str = ""
    config: str = ""  # the `config_key` of the training configuration it was found for ("": not recorded)

    def table(self) -> pd.DataFrame:
        return pd.DataFrame({"lr": self.lrs, "loss": self.losses})

    def save(self, folder: Path) -> dict[str, Path]:
        """`lr_find.csv` (lr, loss), `lr_find.png` (the curve with both suggestions) and `lr_find.json`."""
        from kagglekit.report.figures import lr_find_png

        folder = Path(folder)
        paths = {key: folder / name for key, name in FILES.items()}
        write_csv(paths["table"], self.table())
        atomic_write(paths["plot"], lambda tmp: tmp.write_bytes(lr_find_png(self)))
        suggested = {"member": self.member, "valley": self.valley, "slide": self.slide, "config": self.config}
        write_json(paths["suggestions"], suggested)
        return paths

    @classmethod
    def load(cls, folder: Path) -> LRFinding | None:
        """The finding saved in `folder`, or None when there is none."""
        folder = Path(folder)
        if not (folder / FILES["suggestions"]).is_file() or not (folder / FILES["table"]).is_file():
            return None
        saved = json.loads((folder / FILES["suggestions"]).read_text())
        table = pd.read_csv(folder / FILES["table"])
        return cls(table["lr"].tolist(), table["loss"].tolist(), saved["valley"], saved["slide"], saved["member"],
                   saved.get("config", ""))  # fmt: skip


def suggestions(lrs: Sequence[float], losses: Sequence[float], num_it: int) -> tuple[float, float]:
    """fastai's valley and slide suggestions, on the window `Learner.lr_find` hands them: without the first tenth
    of the iterations and the last five, and cut at the first NaN loss. Raises `RecipeError` when the loss
    diverged too early to leave a curve."""
    lrs_t, losses_t = torch.tensor(lrs[num_it // 10 : -5]), torch.tensor(losses[num_it // 10 : -5])
    nan = torch.nonzero(torch.isnan(losses_t)).flatten()
    if len(nan):
        lrs_t, losses_t = lrs_t[: int(nan[0])], losses_t[: int(nan[0])]
    if len(losses_t) < 3:
        raise RecipeError(
            f"lr_find stopped after {len(losses)} of {num_it} batches (the loss diverged), too early for a "
            "suggestion. Use more iterations, or a smaller batch_size so there are more batches."
        )
    lr_diff = min(SLIDE_WINDOW, len(losses_t) - 1)
    return float(valley(lrs_t, losses_t, num_it)[0]), float(slide(lrs_t, losses_t, num_it, lr_diff=lr_diff)[0])


def find_lr(learn: Learner, callbacks: Sequence = (), num_it: int = 100, member: str = "") -> LRFinding:
    """Run fastai's `lr_find` (1e-7 to 10 over `num_it` batches, stopping when the loss diverges) on `learn` as it
    stands (frozen or not), with `callbacks` (gradient accumulation) added; the weights are restored after."""
    saved_path = learn.path
    with tempfile.TemporaryDirectory(prefix="kagglekit-lr-find-") as tmp, learn.added_cbs(list(callbacks)):
        learn.path = Path(tmp)  # where fastai's LRFinder parks the weights it restores: not the working folder
        try:
            learn.lr_find(num_it=num_it, show_plot=False, suggest_funcs=None)
        finally:
            learn.path = saved_path
    lrs = [float(lr) for lr in learn.recorder.lrs]
    losses = [float(loss) for loss in learn.recorder.losses]
    valley_lr, slide_lr = suggestions(lrs, losses, num_it)
    return LRFinding(lrs, losses, valley_lr, slide_lr, member)


def lr_find_member(
    member: Member,
    competition: Competition,
    train: pd.DataFrame,
    is_valid: pd.Series | np.ndarray,
    vocab: dict[str, list[str]],
    seed: int = 42,
    num_workers: int | None = None,
    num_it: int = 100,
) -> LRFinding:
    """`find_lr` on the learner `train_member` would start from: the member's heads, first stage's loaders (size,
    resize, augmentation, batch size) and precision, frozen where its first phase is, with its accumulation and
    mixing (`loss_callbacks`)."""
    set_seed(seed, reproducible=True)
    heads = make_heads(competition, vocab, member)
    is_valid = valid_mask(is_valid, train)
    callbacks = [*accumulation_callbacks(member, int((~is_valid).sum())), *loss_callbacks(member, heads)]
    dls = member_dataloaders(member, competition, train, is_valid, vocab, num_workers=num_workers)
    learn = create_learner(dls, member, heads, input_channels(competition))
    show_progress(learn, member.name)  # no per-batch bars in a pipe or a log
    apply_precision(learn, member)
    _as_first_phase(learn, member)
    return find_lr(learn, callbacks, num_it, member.name)


def _as_first_phase(learn: Learner, member: Member) -> None:
    """Freeze the body where the member's first phase trains the head alone (`schedule`), else unfreeze it."""
    first = schedule(replace(member, lr=1.0))[0]  # the rate is not known yet; freezing does not depend on it
    if first.frozen:
        learn.freeze()
    else:
        learn.unfreeze()


def loss_callbacks(member: Member, heads: Sequence[Head]) -> list[Callback]:
    """The callbacks that change the loss a member trains on: mixup/cutmix and label smoothing (`Mixing`, on every
    batch of the test, as in training's first epochs), so the range test measures that loss."""
    return [Mixing(member, heads)] if member.mixes or member.label_smoothing else []


def resolve_lr(learn: Learner, member: Member, out_dir: Path, callbacks: Sequence = (), config: dict | None = None
               ) -> Member:  # fmt: skip
    """The member with `lr = "find"` replaced by the valley suggestion of `find_lr` on `learn` (a fresh learner
    whose weights it leaves as they were), frozen where the member's first phase is. The finding is saved in
    `out_dir` with the key of `config` (the member's `training_config`); one already there for the same
    configuration is reused, so a resumed member keeps its rate, and one of another configuration is found again.
    Rank 0 finds, the other processes of a multi-GPU run read its file."""
    if member.lr != FIND:
        return member
    key = config_key(config) if config is not None else ""
    with main_process_first():
        finding = LRFinding.load(out_dir)
        if finding is None or finding.config != key:
            _as_first_phase(learn, member)
            finding = replace(find_lr(learn, callbacks, member=member.name), config=key)
            if is_main_process():
                finding.save(out_dir)
    log.info("%s: lr_find suggests %.2e (valley) and %.2e (slide); training at the valley",
             member.name, finding.valley, finding.slide)  # fmt: skip
    return replace(member, lr=finding.valley)
