"""One output block per task: which logits predict which task, how they are trained and turned into probabilities.

A member's output is the concatenation of one block of logits per task; `TaskLoss` knows the blocks, so multi-task
and single-task training are the same code. torch only: exported members use these without fastai's learner.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from kagglekit.competition import Competition
from kagglekit.errors import RecipeError
from kagglekit.recipe import Member


@dataclass(frozen=True)
class Head:
    """The block of outputs that predicts one task: logits `start : start + len(vocab)`."""

    task: str
    column: str
    kind: str  # single | multi
    vocab: tuple[str, ...]
    weight: float  # its weight in the member's loss
    start: int

    @property
    def slice(self) -> slice:
        return slice(self.start, self.start + len(self.vocab))

    def to_dict(self) -> dict:
        """JSON-ready, without `start`, which `place_heads` derives from the order."""
        return {k: list(v) if k == "vocab" else v for k, v in asdict(self).items() if k != "start"}


def place_heads(specs: Iterable[dict]) -> list[Head]:
    """Heads from `{task, column, kind, vocab, weight}` records, laid out one after another in the output."""
    heads, start = [], 0
    for spec in specs:
        heads.append(Head(spec["task"], spec["column"], spec["kind"], tuple(spec["vocab"]), spec["weight"], start))
        start += len(spec["vocab"])
    return heads


def check_tasks(competition: Competition, member: Member) -> dict[str, float]:
    """The member's task -> loss weight (its `tasks`, or the target alone), checked against the competition before
    any data is read: known tasks, the target among them, label smoothing only for single-label heads."""
    weights = member.tasks or {competition.target_task: 1.0}
    unknown = sorted(set(weights) - set(competition.tasks))
    if unknown:
        raise RecipeError(
            f"member {member.name!r}: unknown task(s) {', '.join(unknown)}; "
            f"{competition.name} has {', '.join(competition.tasks)}."
        )
    if competition.target_task not in weights:
        raise RecipeError(f"member {member.name!r}: tasks must include the target {competition.target_task!r}.")
    multi = [name for name in weights if competition.tasks[name].kind == "multi"]
    if member.label_smoothing and multi:
        raise RecipeError(
            f"member {member.name!r}: label_smoothing is for single-label heads; {', '.join(multi)} is multi-label, "
            "where smoothing each tag towards 0.5 is a different regulariser. Remove label_smoothing."
        )
    return weights


def make_heads(competition: Competition, vocab: dict[str, list[str]], member: Member) -> list[Head]:
    """The member's heads: its `tasks` weights, or the competition's target task alone."""
    weights = check_tasks(competition, member)
    tasks = [name for name in competition.tasks if name in weights]  # a fixed order, whatever the recipe's
    return place_heads(
        {"task": n, "column": competition.tasks[n].column, "kind": competition.tasks[n].kind, "vocab": vocab[n],
         "weight": weights[n]} for n in tasks
    )  # fmt: skip


class TaskLoss:
    """Weighted sum of per-task losses: cross-entropy for single-label, BCE for multi-label heads.

    A single-label target is a class index per row, shape (batch,), or class probabilities, shape
    (batch, classes), as mixup, cutmix and label smoothing make them (`kagglekit.train.mixing`); a multi-label
    target is (batch, tags) of 0/1 or soft values. Both losses are linear in the target, so a mixed target's loss
    equals the same mix of the two targets' losses.
    """

    def __init__(self, heads: Sequence[Head]):
        self.heads = list(heads)

    def __call__(self, output: torch.Tensor, *targets: torch.Tensor) -> torch.Tensor:
        total = output.new_zeros(())
        for head, target in zip(self.heads, targets, strict=True):
            logits, target = output[:, head.slice].float(), target.as_subclass(torch.Tensor)
            if head.kind == "single":
                loss = F.cross_entropy(logits, target.long() if target.ndim == 1 else target.float())
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

    def decodes(self, probs: torch.Tensor) -> tuple[torch.Tensor, ...]:
        """Probabilities (batch, outputs) as targets, one per head: the top class's index (batch,) for single-label,
        0/1 per tag above 0.5 (batch, tags) for multi-label (fastai's `BCEWithLogitsLossFlat` threshold). fastai's
        `get_preds(with_decoded=True)` and `learn.show_results()` call this."""
        return tuple(
            probs[:, h.slice].argmax(1) if h.kind == "single" else (probs[:, h.slice] > 0.5).float() for h in self.heads
        )


def task_accuracy(head: Head, index: int):
    """A fastai metric: the accuracy of one head (the top class, or every tag at 0.5 for multi-label)."""

    def metric(output: torch.Tensor, *targets: torch.Tensor) -> torch.Tensor:
        logits, target = output[:, head.slice], targets[index].as_subclass(torch.Tensor)
        if head.kind == "single":
            return (logits.argmax(1) == target).float().mean()
        return ((logits.sigmoid() > 0.5) == target.bool()).float().mean()

    metric.__name__ = f"{head.task}_accuracy"
    return metric
