"""Stage 2: train each ensemble member (every fold or split it has) and keep its TTA probabilities on disk.

A member's folder `members/<name>/` (or `members/<name>/fold<k>/` per fold) holds its weights, history and
validation/test probabilities; a member whose folder is complete is reused, an interrupted one resumes.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from kagglekit._io import write_csv
from kagglekit.data.splits import member_splits
from kagglekit.ensemble.combine import item_losses, mean_probabilities
from kagglekit.ensemble.probabilities import Probabilities
from kagglekit.pipeline.data import Data
from kagglekit.recipe import Member, Recipe
from kagglekit.runs import RunRecord
from kagglekit.submission.build import answers_for, score_validation
from kagglekit.train.distributed import is_main_process, main_process_alone

log = logging.getLogger(__name__)


@dataclass
class MemberOutput:
    """One member's honest validation probabilities (held-out or out-of-fold rows) and test probabilities."""

    name: str
    valid: Probabilities
    test: Probabilities
    weight: float = 1.0  # its weight in the ensemble mean
    arch: str = ""
    valid_score: float | None = None  # the competition metric of `valid`, scored as a submission is
    task_scores: dict[str, float] = field(default_factory=dict)  # the saved model's accuracy per task, no TTA
    last_epoch_scores: dict[str, float] = field(default_factory=dict)  # the last epoch's, when epochs were averaged
    train_seconds: float = 0.0
    reused: bool = False  # every part was already finished on disk
    train_losses: pd.Series | None = None  # per training row (by id), for a next member with sampling = "loss"

    @property
    def valid_rows(self) -> int:
        return len(self.valid.ids)


@dataclass
class _Part:
    valid: Probabilities
    test: Probabilities
    losses: pd.Series | None
    reused: bool


def _finished(part_dir: Path) -> bool:
    return (part_dir / "member.json").is_file() and (part_dir / "test_ids.csv").is_file()


@contextmanager
def _step(record: RunRecord | None, name: str) -> Iterator[None]:
    with record.step(name) if record else nullcontext():
        yield


def _training_losses(learn, data: Data, label: str) -> pd.Series:
    """Each training row's loss under the finished model (no TTA), by id: what `sampling = "loss"` draws by."""
    from kagglekit.predict.tta import predict_member

    target, competition = data.competition.target_task, data.competition
    with main_process_alone():
        plain = predict_member(learn, data.items.train, 0, label=f"{label} training losses")
    truth = answers_for(data.items.train, plain.ids, competition)[competition.tasks[target].column]
    losses = item_losses(plain.tasks[target], truth, plain.vocab[target], competition.tasks[target].kind)
    return pd.Series(losses, index=pd.Index(plain.ids, name="id"), name="loss")


def _fit_part(
    member: Member, recipe: Recipe, data: Data, is_valid: pd.Series, part_dir: Path, label: str,
    previous: MemberOutput | None, keep_losses: bool, record: RunRecord | None,
) -> _Part | None:  # fmt: skip
    """Train (or reuse) one model of a member and predict its validation rows and the test set with TTA."""
    from kagglekit.predict.tta import predict_member
    from kagglekit.train.checkpoint import clear_checkpoint
    from kagglekit.train.loaders import sampling_weights
    from kagglekit.train.member import train_member

    losses_file = part_dir / "train_losses.csv"
    if _finished(part_dir) and (losses_file.is_file() or not keep_losses):
        log.info("Reusing finished member %s", label)
        losses = pd.read_csv(losses_file, dtype={"id": str}).set_index("id")["loss"] if keep_losses else None
        return _Part(Probabilities.load(part_dir, "valid"), Probabilities.load(part_dir, "test"), losses, True)
    weights = None
    if member.sampling != "none" and is_main_process():  # DistributedDL uses rank 0's order
        target = data.competition.tasks[data.competition.target_task].column
        losses = previous.train_losses if previous else None
        weights = sampling_weights(member, data.items.train, target, losses)
    with _step(record, f"train:{label}"):
        learn = train_member(member, data.competition, data.items.train, is_valid, data.vocab, part_dir,
                             recipe.member_seed(member), recipe.num_workers, weights)  # fmt: skip
    if not is_main_process():
        return None  # the other ranks only help train; rank 0 predicts and writes
    with _step(record, f"tta:{label}"), main_process_alone():
        valid = predict_member(learn, data.items.train[is_valid.to_numpy()], recipe.tta, label=f"{label} valid TTA")
        test = predict_member(learn, data.items.test, recipe.tta, label=f"{label} test TTA")
        valid.save(part_dir, "valid")
        test.save(part_dir, "test")
        clear_checkpoint(part_dir)
    losses = _training_losses(learn, data, label) if keep_losses else None
    if losses is not None:
        write_csv(losses_file, losses.to_frame(), index=True)
    return _Part(valid, test, losses, False)


def fit_member(
    member: Member,
    recipe: Recipe,
    data: Data,
    folder: Path,
    previous: MemberOutput | None = None,
    keep_losses: bool = False,
    record: RunRecord | None = None,
) -> MemberOutput | None:
    """Train every model of `member` (one, one per fold, or on its own split) into `folder/members/<name>/`,
    predict with the recipe's TTA, and score the honest validation probabilities.

    Splits are persisted in `folder`, so every member of a run validates on the same rows. `previous` is the
    member before it (`sampling = "loss"` draws rows by its losses); `keep_losses` computes this member's
    training losses for the next one. Returns None on the helper processes of a multi-GPU run (rank > 0).
    """
    from kagglekit.train.checkpoint import history_scores

    member_dir = Path(folder) / "members" / member.name
    parts = []
    for part, is_valid in member_splits(member, recipe, data.items.train, data.competition, Path(folder)):
        label = f"{member.name}/{part}" if part else member.name
        parts.append(_fit_part(member, recipe, data, is_valid, member_dir / part, label, previous, keep_losses,
                               record))  # fmt: skip
    if not is_main_process():
        return None
    valid = parts[0].valid.concat(*(p.valid for p in parts[1:]))  # folds: together, out-of-fold predictions
    test = mean_probabilities([p.test for p in parts])  # fold models averaged
    if len(parts) > 1:
        valid.save(member_dir, "valid")
        test.save(member_dir, "test")
    task_scores, last_epoch_scores, seconds = history_scores(
        [member_dir / f"fold{k}" for k in range(member.folds or 0)] or [member_dir]
    )
    return MemberOutput(
        name=member.name, valid=valid, test=test, weight=member.weight, arch=member.arch,
        valid_score=score_validation(valid, data.items.train, data.competition), task_scores=task_scores,
        last_epoch_scores=last_epoch_scores, train_seconds=seconds, reused=all(p.reused for p in parts),
        train_losses=parts[-1].losses,
    )  # fmt: skip


def fit_members(recipe: Recipe, data: Data, folder: Path, record: RunRecord | None = None) -> list[MemberOutput]:
    """`fit_member` for every member of the recipe, in order (empty on the helper processes of a multi-GPU run)."""
    outputs: list[MemberOutput] = []
    for number, member in enumerate(recipe.members):
        keep_losses = number + 1 < len(recipe.members) and recipe.members[number + 1].sampling == "loss"
        output = fit_member(member, recipe, data, folder, outputs[-1] if outputs else None, keep_losses, record)
        if output is not None:
            outputs.append(output)
    return outputs
