"""A time budget for predicting: a code competition's notebook is killed at Kaggle's limit (9 hours) with no
submission, so the plan is fitted to the budget before the work starts.

The cost of each member is measured on the first batches of the real test set (seconds per image of the plain pass
and of one augmented pass, seconds per image to resize the cached images into memory at the member's size, plus the
seconds to load each of its models), then scaled to the number of test images.
When the estimate exceeds the budget, TTA passes go first (each costs as much as a member's augmented pass and
gains least), then the members of lowest ensemble weight, one at a time (of equal weights, the slowest first).
When even the last member alone, without TTA, cannot finish in time, `BudgetError` stops the prediction at once,
not at Kaggle's limit.
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import pandas as pd

from kagglekit.errors import BudgetError
from kagglekit.kaggle.notebook import in_kaggle_notebook
from kagglekit.predict.pack import InferencePack, PackMember

log = logging.getLogger(__name__)

KAGGLE_LIMIT_HOURS = 9.0  # the run-time limit of a code competition's notebook (GPU or CPU)
SAFETY_MARGIN_HOURS = 1.0  # installing kagglekit, reading the data, writing the submission, and slower batches
MEASURED_BATCHES = 2  # batches timed per pass, after one warm-up batch


def default_budget_hours() -> float | None:
    """Kaggle's limit minus the safety margin inside a Kaggle notebook; None (no limit) elsewhere."""
    return KAGGLE_LIMIT_HOURS - SAFETY_MARGIN_HOURS if in_kaggle_notebook() else None


@dataclass
class MemberCost:
    """What predicting one member costs, measured: seconds per image of each pass and of resizing the images into
    memory, seconds to load each model."""

    name: str
    weight: float
    parts: int  # models (folds) to load and run
    load: float  # seconds to load one model
    plain: float  # seconds per image of the plain pass
    augmented: float  # seconds per image of one augmented (TTA) pass
    resize: float = 0.0  # seconds per image to resize it into memory, once per member (0: an earlier member did)

    def seconds(self, images: int, tta: int) -> float:
        return images * self.resize + self.parts * (self.load + images * (self.plain + tta * self.augmented))


def duration(seconds: float) -> str:
    """Seconds as a person reads them: hours, minutes or seconds."""
    if seconds >= 3600:
        return f"{seconds / 3600:.2f} h"
    return f"{seconds / 60:.1f} min" if seconds >= 60 else f"{seconds:.1f} s"


def measured(costs: list[MemberCost], images: int, budget: float) -> list[str]:
    """The measurements as log lines: the budget left, and each member's cost."""
    lines = [f"Time budget {duration(budget)} left for {images} test images; measured on the first batches:"]
    for c in costs:
        lines.append(f"  {c.name} (weight {c.weight:g}, {c.parts} model(s)): {c.plain * 1000:.1f} ms/image plain, "
                     f"{c.augmented * 1000:.1f} ms/image per TTA pass, {c.resize * 1000:.1f} ms/image to resize, "
                     f"{c.load:.1f} s to load")  # fmt: skip
    return lines


@dataclass
class Plan:
    """The members and TTA passes that fit the budget (every member and the pack's TTA when there is no budget)."""

    images: int
    requested_tta: int
    tta: int
    members: list[str]
    dropped: list[str] = field(default_factory=list)
    budget: float | None = None  # seconds left for predicting when the plan was made
    estimate: float | None = None  # seconds the plan is expected to take
    costs: list[MemberCost] = field(default_factory=list)

    def summary(self) -> str:
        """One line: what was dropped to fit the budget, and the estimate against it."""
        if self.budget is None:
            return f"Plan: {len(self.members)} member(s), TTA {self.tta} on {self.images} test images (no time budget)"
        changes = []
        if self.tta < self.requested_tta:
            changes.append(f"TTA {self.requested_tta} -> {self.tta} passes")
        if self.dropped:
            changes.append(f"dropped member(s) {', '.join(self.dropped)} (lowest weight)")
        return (f"Plan: {'; '.join(changes) or 'everything fits'}; {len(self.members)} member(s), TTA {self.tta}: "
                f"estimated {duration(self.estimate or 0)} of {duration(self.budget)}")  # fmt: skip

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def fit_plan(costs: list[MemberCost], images: int, tta: int, budget: float) -> Plan:
    """The largest plan whose estimate fits `budget` seconds: TTA passes dropped first, then the members of lowest
    weight (the slowest of equal weights); `BudgetError` when the last member alone without TTA still does not fit."""
    kept, passes, dropped = list(costs), tta, []

    def estimate() -> float:
        return sum(c.seconds(images, passes) for c in kept)

    while estimate() > budget:
        if passes > 0:
            passes -= 1
        elif len(kept) > 1:
            lightest = min(kept, key=lambda c: (c.weight, -c.seconds(images, 0)))  # of equal weights, the slowest
            kept.remove(lightest)
            dropped.append(lightest.name)
        else:
            raise BudgetError(
                f"Even the smallest plan, member {kept[0].name} alone without TTA, needs an estimated "
                f"{duration(estimate())} for {images} test images ({kept[0].plain * 1000:.1f} ms/image), more than "
                f"the {duration(max(budget, 0))} left in the time budget; stopping now rather than at the limit. Pack "
                "a faster member (smaller architecture or image size), or raise --time-budget."
            )
    return Plan(images, tta, passes, [c.name for c in kept], dropped, budget, estimate(), costs)


def measure(member: PackMember, test: pd.DataFrame, tta: int, num_workers: int | None = None) -> MemberCost:
    """Time one member on the first batches of `test`: loading its first model, resizing the batches' images into
    memory at its size (`kagglekit.train.batches.ImageStore`: free when the member before it had the same size, as
    when predicting), then its plain pass and one augmented pass over `MEASURED_BATCHES` batches, after a warm-up
    batch (CUDA set-up, cuDNN autotuning)."""
    from kagglekit.predict.learner import rebuild_learner
    from kagglekit.predict.tta import predict_member

    started = time.perf_counter()
    learn = rebuild_learner(member.parts[0].description, member.parts[0].weights, num_workers)
    load = time.perf_counter() - started
    batch = learn.dls.bs
    sample = test.head(MEASURED_BATCHES * batch)
    started = time.perf_counter()
    learn.dls.test_dl(sample)  # the loader resizes its images into memory once; every pass then reuses them
    resize = time.perf_counter() - started
    predict_member(learn, test.head(batch), 0, label=f"{member.name} warm-up")
    timings: list[float] = []
    predict_member(learn, sample, 1 if tta else 0, label=f"{member.name} timing", timings=timings)
    plain, augmented = timings[-1], timings[0] if tta else 0.0
    return MemberCost(member.name, member.weight, len(member.parts), load, plain / len(sample),
                      augmented / len(sample), resize / len(sample))  # fmt: skip


def plan_prediction(
    pack: InferencePack,
    test: pd.DataFrame,
    tta: int,
    budget_hours: float | None,
    started: float,
    num_workers: int | None = None,
) -> Plan:
    """The plan for predicting `test` (an item table) with `pack`'s members within `budget_hours` counted from
    `started` (a `time.monotonic()` value: data preparation and this measurement count against the budget)."""
    if budget_hours is None or not len(test):
        return Plan(len(test), tta, tta, [m.name for m in pack.members])
    spent = time.monotonic() - started
    if spent >= budget_hours * 3600:
        raise BudgetError(f"The time budget of {duration(budget_hours * 3600)} was used up before predicting began "
                          f"(reading and preparing {len(test)} test images took {duration(spent)}); raise "
                          "--time-budget.")  # fmt: skip
    costs = [measure(m, test, tta, num_workers) for m in pack.members]
    left = budget_hours * 3600 - (time.monotonic() - started)
    for line in measured(costs, len(test), left):  # before fitting: they explain a BudgetError too
        log.info(line)
    return fit_plan(costs, len(test), tta, left)
