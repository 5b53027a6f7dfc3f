"""A whole submission from an inference pack: the test set of a competition folder (or of a Kaggle notebook's
input, the hidden one during a code competition's rerun) through the stages `run` ends with.

The members predict with the run's own TTA (`predict_member` on the rebuilt Learner), the ensemble stage combines
them with the pack's weights and the training prior (`ensemble_test`), and `write_and_check` writes and checks the
file; so on the same test images a pack reproduces its run's submission. A record (`run.json`) of the prediction,
with its time plan, is kept like a run's.
"""

from __future__ import annotations

import logging
import math
import shlex
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd

from kagglekit.competition import Competition
from kagglekit.data.locate import locate_data
from kagglekit.defaults import cache_root
from kagglekit.defaults import runs_dir as default_runs_dir
from kagglekit.defaults import submissions_dir as default_submissions_dir
from kagglekit.ensemble.combine import mean_probabilities
from kagglekit.ensemble.probabilities import Probabilities
from kagglekit.errors import DataError
from kagglekit.kaggle.notebook import is_competition_rerun
from kagglekit.pipeline.combine import EnsembleOutput, ensemble_test
from kagglekit.pipeline.data import Data
from kagglekit.pipeline.job import record_submission, record_undecodable
from kagglekit.pipeline.preflight import check_outputs
from kagglekit.pipeline.write import SubmissionOutput
from kagglekit.predict.budget import Plan, default_budget_hours, plan_prediction
from kagglekit.predict.inputs import prepare_submission_test
from kagglekit.predict.pack import InferencePack, PackMember, load_pack
from kagglekit.runs import RunRecord, claim_run, config_key

log = logging.getLogger(__name__)


@dataclass
class PredictionResult:
    """What `predict_submission` made: its record folder, the time plan it followed, and the checked submission."""

    competition: Competition
    folder: Path
    plan: Plan
    ensemble: EnsembleOutput
    written: SubmissionOutput
    rerun: bool = False  # a code competition's rerun on the hidden test set
    published: Path | None = None  # /kaggle/working/submission.csv in a notebook
    notes: list[str] = field(default_factory=list)

    @property
    def submission(self) -> Path:
        return self.written.path

    @property
    def check(self):
        return self.written.check


def member_probabilities(
    member: PackMember, test: pd.DataFrame, tta: int, num_workers: int | None = None
) -> Probabilities:
    """One member's TTA probabilities for `test` (an item table whose paths are image cache entries made with the
    pack's settings, as `prepare_test` makes them): each of its models (folds) in turn, averaged as `fit_member`
    averages them; `tta` augmented passes if the run used TTA for this member, else the plain pass. Only one model
    is in memory at a time. Other images are a `DataError` (`check_prepared`)."""
    from kagglekit.predict.learner import check_prepared, rebuild_learner
    from kagglekit.predict.tta import predict_member

    parts = []
    for number, part in enumerate(member.parts):
        learn = rebuild_learner(part.description, part.weights, num_workers)
        check_prepared(learn, test)
        label = f"{member.name} TTA" + (f" ({number + 1}/{len(member.parts)})" if len(member.parts) > 1 else "")
        parts.append(predict_member(learn, test, tta if member.tta_used else 0, label=label))
        del learn
    return mean_probabilities(parts)


def _empty(vocab: dict[str, list[str]]) -> Probabilities:
    return Probabilities([], {task: np.zeros((0, len(v)), np.float32) for task, v in vocab.items()}, vocab)


def _ensemble(
    pack: InferencePack, plan: Plan, data: Data, record: RunRecord, num_workers: int | None
) -> EnsembleOutput:
    """The plan's members predicted and combined by the ensemble stage, with the pack's weights and thresholds."""
    members = [m for m in pack.members if m.name in plan.members]
    test, tests = data.items.test, []
    for member in members if len(test) else []:  # no readable test image: the prior alone
        started = time.perf_counter()
        tests.append(member_probabilities(member, test, plan.tta, num_workers))
        record.metrics.setdefault("predict_seconds", {})[member.name] = round(time.perf_counter() - started, 2)
    weights = [m.weight for m in members]
    combined = ensemble_test(tests, weights, data) if tests else data.fallback([data.competition.target_task])
    notes = [f"member(s) {', '.join(plan.dropped)} left out to fit the time budget"] if plan.dropped else []
    names = [m.name for m in members]
    return EnsembleOutput(data.competition, _empty(pack.vocab), combined, weights, pack.tuned_weights,
                          pack.thresholds, notes=notes, members=names, prior=data.prior())  # fmt: skip


@contextmanager
def _open_record(pack: InferencePack, data_dir: Path, runs_dir: Path, name: str, **config) -> Iterator[RunRecord]:
    """The prediction's record in a new run folder of its own (`claim_run`), locked until the block ends."""
    competition = pack.spec()
    config = {"competition": competition.name, "pack": str(pack.folder.resolve()), "pack_source": pack.source,
              "data_dir": str(Path(data_dir).resolve()), **config}  # fmt: skip
    key = config_key(config)
    with claim_run(runs_dir, competition.name, name, key, fresh=True) as folder:  # nothing to resume: always new
        record = RunRecord(folder, config={**config, "command": shlex.join(sys.argv)}, config_key=key)
        record.save()
        yield record


def _predict_stages(record: RunRecord, pack: InferencePack, data_dir: Path, started: float, name: str,
                    submissions_dir: Path, num_workers: int | None) -> PredictionResult:  # fmt: skip
    """Prepare the test images, plan within the recorded budget (counted from `started`, a `time.monotonic()`
    value), predict, ensemble, write and check, each step saved in the record."""
    competition, tta, budget = pack.spec(), record.config["tta"], record.config["time_budget_hours"]
    with record.step("prepare_data"):
        prepared = prepare_submission_test(pack, data_dir)
        record.metrics["n_test"] = len(prepared.items.test) + len(prepared.undecodable_test)
        record.metrics["image_cache"] = prepared.image_cache
        if not record.metrics["n_test"]:
            raise DataError(f"{data_dir / competition.sample_submission} lists no test ids: nothing to predict.")
        record_undecodable(record, prepared)
    with record.step("plan"):
        plan = plan_prediction(pack, prepared.items.test, tta, None if budget == math.inf else budget, started,
                               num_workers)  # fmt: skip
        record.metrics["plan"] = plan.to_dict()
        log.info(plan.summary())
    with record.step("predict"):
        ensemble = _ensemble(pack, plan, prepared, record, num_workers)
        ensemble.save(record.artifact("ensemble", record.folder / "ensemble"))
    with record.step("submission"):
        written = record_submission(record, ensemble, prepared, name, submissions_dir)
    record.artifact("submission", written.path)
    record.notes.extend(ensemble.notes)
    record.status = "finished" if written.check.ok else "finished: submission check failed"
    record.save()
    published = record.artifacts.get("kaggle_submission")
    return PredictionResult(competition, record.folder, plan, ensemble, written, record.config["rerun"],
                            Path(published) if published else None, record.notes)  # fmt: skip


def predict_submission(
    pack: Path | InferencePack,
    data: Path | None = None,
    *,
    time_budget: float | None = None,
    tta: int | None = None,
    name: str | None = None,
    runs_dir: Path | None = None,
    submissions_dir: Path | None = None,
    num_workers: int | None = None,
) -> PredictionResult:
    """Predict the competition's test set with an inference pack (or a finished run folder) and write the checked
    submission, as `run` writes it.

    `data` is the competition's folder (default: the Kaggle notebook's input, where the hidden test set is during a
    code competition's rerun). `time_budget` is in hours (default: Kaggle's 9-hour limit minus a margin inside a
    Kaggle notebook, none elsewhere): TTA passes, then the members of lowest weight, are dropped to fit it (see
    `kagglekit.predict.budget`), and a `BudgetError` stops at once when nothing fits. `tta` overrides the pack's TTA
    passes. Test images that cannot be read get the training prior, with a loud warning and
    `undecodable_test.csv`. The output folders are checked first (`check_outputs`, as `run` does); the record goes
    to a new `runs/<competition>/<stamp>_<name>/run.json`.
    """
    started = time.monotonic()
    pack = pack if isinstance(pack, InferencePack) else load_pack(pack)
    competition, rerun = pack.spec(), is_competition_rerun()
    tta = pack.tta if tta is None else tta
    if tta < 0:
        raise DataError(f"tta must be 0 or more, got {tta}.")
    budget = default_budget_hours() if time_budget is None else time_budget
    if budget is not None and not budget > 0:
        raise DataError(f"The time budget must be a positive number of hours, got {budget}.")
    name = name or f"predict-{pack.source.get('recipe') or 'pack'}"
    outputs = {"--runs": Path(runs_dir or default_runs_dir()), "--submissions": Path(submissions_dir or
               default_submissions_dir()), "KAGGLEKIT_CACHE": cache_root()}  # fmt: skip
    check_outputs(competition, outputs, name)
    if rerun:
        log.info("Kaggle competition rerun: predicting the hidden test set")
    data_dir = locate_data(competition, data)
    with _open_record(pack, data_dir, outputs["--runs"], name, tta=tta, time_budget_hours=budget,
                      rerun=rerun) as record:  # fmt: skip
        return _predict_stages(record, pack, data_dir, started, name, outputs["--submissions"], num_workers)
