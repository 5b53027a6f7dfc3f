"""Stage 3: the ensemble of the members' probabilities, its weights and thresholds, scored honestly.

Two guards: members no better than the constant prediction (`MemberOutput.broken`) are left out unless the recipe
keeps them, and an ensemble that scores below its best member says so."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from kagglekit._io import write_json
from kagglekit.competition import Competition
from kagglekit.ensemble.combine import mean_probabilities, tune_weights
from kagglekit.ensemble.probabilities import Probabilities
from kagglekit.ensemble.thresholds import Thresholds, label_matrix, tune_for_metric
from kagglekit.errors import RecipeError
from kagglekit.pipeline.data import Data
from kagglekit.pipeline.members import MemberOutput
from kagglekit.recipe import Recipe
from kagglekit.submission.build import answers_for, score_validation
from kagglekit.submission.metrics import get_metric

log = logging.getLogger(__name__)

NO_HONEST_ROWS = (
    "No training row was held out from every member (different splits share no validation rows), so there is "
    "no honest ensemble validation score. Use a shared split or folds."
)


@dataclass
class EnsembleOutput:
    """The ensemble's probabilities and how they were combined.

    `valid` covers the rows held out from every member (`rows` of them), `test` every test id. `members` names the
    members averaged and `weights` gives one weight each (the recipe's, or tuned); `excluded` the members left out
    as broken. `thresholds` are tuned for multi-label submissions (None: 0.5); `prior` holds the training class
    shares that undecodable test images were predicted with. `score_no_tta` is the same ensemble of the members'
    plain passes; `best_member` the best member's (name, score) on the same rows.
    """

    competition: Competition
    valid: Probabilities
    test: Probabilities
    weights: list[float]
    tuned_weights: bool = False
    thresholds: Thresholds | None = None
    score: float | None = None  # validation metric of `valid` (None: no honest rows, or no labels at hand)
    notes: list[str] = field(default_factory=list)
    members: list[str] = field(default_factory=list)
    excluded: list[str] = field(default_factory=list)
    score_no_tta: float | None = None
    best_member: tuple[str, float] | None = None
    prior: dict[str, np.ndarray] | None = None

    @property
    def rows(self) -> int:
        return len(self.valid.ids)

    @property
    def cutoffs(self) -> np.ndarray | float:
        """What `to_submission` cuts multi-label probabilities at."""
        return self.thresholds.thresholds if self.thresholds is not None else 0.5

    def save(self, folder: Path) -> None:
        """The probabilities, and `ensemble.json`: what an inference pack needs to combine members as this did (the
        weight of each member averaged, tuned or not, thresholds, the prior), and the members left out."""
        self.valid.save(folder, "valid")
        self.test.save(folder, "test")
        prior = None if self.prior is None else {task: np.asarray(p).tolist() for task, p in self.prior.items()}
        write_json(folder / "ensemble.json", {
            "weights": dict(zip(self.members, self.weights, strict=True)), "tuned_weights": self.tuned_weights,
            "thresholds": self.thresholds.to_dict() if self.thresholds is not None else None, "prior": prior,
            "excluded": self.excluded,
        })  # fmt: skip


def ensemble_test(tests: Sequence[Probabilities], weights: Sequence[float], data: Data | None) -> Probabilities:
    """The weighted mean of the members' test probabilities, completed with the training prior (`Data.fallback`) of
    the tasks they predict for every test image no member could read."""
    test = mean_probabilities(tests, weights)
    fallback = data.fallback(test.tasks) if data is not None else None
    return test if fallback is None else test.concat(fallback)


def _tuned_weights(members: Sequence[MemberOutput], valid: Probabilities, data: Data) -> list[float]:
    competition = data.competition
    return tune_weights(
        [m.valid.subset(valid.ids) for m in members],
        lambda p: score_validation(p, data.items.train, competition),
        greater_is_better=get_metric(competition.metric).greater_is_better,
    )


def _labelled(valid: Probabilities, data: Data) -> tuple[Probabilities, int]:
    """The rows of `valid` whose labels `data` has, and how many it lacks."""
    known = set(data.items.train["id"])
    kept = [i for i in valid.ids if i in known]
    return (valid if len(kept) == len(valid.ids) else valid.subset(kept)), len(valid.ids) - len(kept)


def _thresholds(valid: Probabilities, data: Data) -> Thresholds:
    competition = data.competition
    target = competition.target_task
    task, classes = competition.tasks[target], valid.vocab[target]
    truth = answers_for(data.items.train, valid.ids, competition)[task.column]
    truth_matrix = label_matrix(truth, classes, task.label_delim)
    return tune_for_metric(competition.metric, valid.tasks[target], truth_matrix, classes=classes)


def _included(members: Sequence[MemberOutput], recipe: Recipe) -> tuple[list[MemberOutput], list[str]]:
    """The members to average and a note for each broken one: left out, unless the recipe keeps them or every
    member is broken. A member whose probabilities are not finite is never averaged."""
    finite = [m for m in members if not (m.broken and m.valid_score is None)]
    if not finite:
        raise RecipeError(
            f"Every member ({', '.join(m.name for m in members)}) diverged: their predictions are not finite. "
            'Lower the learning rate (or use lr = "find").'
        )
    keep = finite if recipe.keep_broken_members else [m for m in finite if not m.broken]
    notes = []
    if not keep:
        keep = finite
        notes.append("every member is no better than the constant prediction (training prior), so all are kept; "
                     "the recipe needs more epochs, another learning rate or more data")  # fmt: skip
    kept, averageable = {m.name for m in keep}, {m.name for m in finite}
    for m in members:
        if m.broken:
            fate = "kept in the ensemble" if m.name in kept else "left out of the ensemble"
            switch = " (keep_broken_members = true keeps it)" if m.name in averageable - kept else ""
            notes.append(f"member {m.name} is broken: {m.broken}; {fate}{switch}")
    for note in notes:
        log.warning(note)
    return keep, notes


def _best_member(members: Sequence[MemberOutput], ens: EnsembleOutput, data: Data) -> str | None:
    """Record the best member on the ensemble's rows; a note when the ensemble scores below it."""
    scored = [(m.name, score_validation(m.valid.subset(ens.valid.ids), data.items.train, data.competition))
              for m in members]  # fmt: skip
    metric = get_metric(data.competition.metric)
    name, best = (max if metric.greater_is_better else min)(scored, key=lambda pair: pair[1])
    ens.best_member = (name, best)
    if ens.score is None or not (ens.score < best if metric.greater_is_better else ens.score > best):
        return None
    note = (f"the ensemble's validation {metric.name} {ens.score:.4f} is below its best member's ({name}, "
            f"{best:.4f}) on the same {ens.rows} rows: averaging hurts here; drop the weaker members or set "
            'ensemble_weights = "tuned"')  # fmt: skip
    log.warning(note)
    return note


def _score_no_tta(members: Sequence[MemberOutput], ens: EnsembleOutput, data: Data) -> float | None:
    """The ensemble's score from the members' plain passes, with the same weights and thresholds."""
    if any(m.valid_plain is None for m in members):
        return None
    plain = mean_probabilities([m.valid_plain.subset(ens.valid.ids) for m in members], ens.weights)
    return score_validation(plain, data.items.train, data.competition, ens.cutoffs)


def ensemble_members(members: Sequence[MemberOutput], recipe: Recipe, data: Data | Competition) -> EnsembleOutput:
    """The weighted mean of the members' probabilities (never a vote), scored on the rows held out from all.

    With `data` (its training labels), `ensemble_weights = "tuned"` fits the weights, multi-label thresholds are
    tuned, and the ensemble is scored, all on those honest rows; undecodable test images get the training
    prior. With only the competition (fan-out without the data at hand), it is the recipe-weighted mean, with
    0.5 thresholds and no score. Broken members are left out (a note each) unless `recipe.keep_broken_members`;
    an ensemble scoring below its best member adds a note. Raises `RecipeError` when every member diverged.
    """
    competition = data.competition if isinstance(data, Data) else data
    everyone = members
    members, notes = _included(members, recipe)
    weights, tuned, thresholds, score = [m.weight for m in members], False, None, None
    valid = mean_probabilities([m.valid for m in members], weights)
    if isinstance(data, Data):
        valid, unlabelled = _labelled(valid, data)
        if unlabelled:  # fan-out: members validated on Kaggle, on rows the local data may lack
            notes.append(f"{unlabelled} validation rows have no label in the data at hand and are not scored")
        if not valid.ids:
            log.warning(NO_HONEST_ROWS)
            notes.append(NO_HONEST_ROWS)
        else:
            if recipe.ensemble_weights == "tuned" and len(members) > 1:
                weights, tuned = _tuned_weights(members, valid, data), True
                valid = mean_probabilities([m.valid.subset(valid.ids) for m in members], weights)
                notes.append("ensemble weights were tuned on the validation rows they are scored on (optimistic)")
            if competition.submission.kind == "tags":
                thresholds = _thresholds(valid, data)
            cutoffs = thresholds.thresholds if thresholds else 0.5
            score = score_validation(valid, data.items.train, competition, cutoffs)
    else:
        notes.append("no labels at hand: the ensemble is not scored and multi-label tags use a 0.5 threshold")
    labelled = data if isinstance(data, Data) else None
    test = ensemble_test([m.test for m in members], weights, labelled)
    excluded = [m.name for m in everyone if m.name not in {kept.name for kept in members}]
    prior = labelled.prior() if labelled is not None else None
    ens = EnsembleOutput(competition, valid, test, weights, tuned, thresholds, score, notes,
                         [m.name for m in members], excluded, prior=prior)  # fmt: skip
    if labelled is not None and valid.ids:
        ens.score_no_tta = _score_no_tta(members, ens, data)
        below = _best_member(members, ens, data) if len(members) > 1 else None
        ens.notes.extend([below] if below else [])
    return ens
