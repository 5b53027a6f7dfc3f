"""`run`: the whole job, as a short composition of the public stages a notebook can call one by one.

preflight (`check_outputs`) -> locate data -> `prepare_data` (+ the user's label corrections) -> preflight
(`check_recipe`) -> `fit_members` (splits, training, TTA) -> `ensemble_members` (weights, thresholds) ->
`write_and_check` -> `write_report`; the run record (`run.json`) is saved after every step, and the run folder is
locked while the run goes on.
"""

from __future__ import annotations

import logging
import shlex
import sys
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from kagglekit._io import write_csv, write_json
from kagglekit.competition import Competition
from kagglekit.data.corrections import read_corrections
from kagglekit.data.locate import locate_data
from kagglekit.defaults import cache_root
from kagglekit.defaults import runs_dir as default_runs_dir
from kagglekit.defaults import submissions_dir as default_submissions_dir
from kagglekit.kaggle.notebook import publish_submission
from kagglekit.pipeline.combine import EnsembleOutput, ensemble_members
from kagglekit.pipeline.data import Data, corrected, prepare_data
from kagglekit.pipeline.members import MemberOutput, fit_members
from kagglekit.pipeline.preflight import check_outputs, check_recipe, explain_full_disk
from kagglekit.pipeline.write import SubmissionOutput, write_and_check
from kagglekit.recipe import Recipe, load_recipe
from kagglekit.registry import get_competition
from kagglekit.report.build import write_report
from kagglekit.report.run_files import lr_found
from kagglekit.runs import RunRecord, claim_run, config_key
from kagglekit.samples.writer import ensure_sample
from kagglekit.submission.build import score_submission
from kagglekit.train.distributed import is_main_process, main_process_first
from kagglekit.train.heads import check_tasks

log = logging.getLogger(__name__)


@dataclass
class RunResult:
    """What a run made: its folder, each member's and the ensemble's output, and the checked submission."""

    competition: Competition
    folder: Path
    members: list[MemberOutput] = field(default_factory=list)
    ensemble: EnsembleOutput | None = None
    written: SubmissionOutput | None = None
    test_score: float | None = None  # against --answers (or the sample's hidden answers)
    notes: list[str] = field(default_factory=list)
    report: Path | None = None  # report.html in the run folder

    @property
    def metric(self) -> str:
        return self.competition.metric

    @property
    def submission(self) -> Path | None:
        return self.written.path if self.written else None

    @property
    def check(self):
        return self.written.check if self.written else None


@contextmanager
def _open_record(competition: Competition, recipe: Recipe, data_dir: Path, answers: Path | None, sample: bool,
                 runs_dir: Path, name: str, fresh: bool, corrections: Path | None) -> Iterator[RunRecord]:  # fmt: skip
    """The run's record in a new folder, or in the unfinished run of the same configuration (resume), with the run
    folder locked until the block ends (see `claim_run`). The marked rows of `corrections` are part of the
    configuration (and of run.json), so a corrected run is a new run."""
    config = {"competition": competition.name, "data_dir": str(data_dir.resolve()), "sample": sample,
              "answers": str(answers) if answers else None, "recipe": recipe.to_dict()}  # fmt: skip
    extra = {"command": shlex.join(sys.argv)}
    if corrections is not None:
        marked = read_corrections(corrections)
        config["corrections"] = marked.to_dict(orient="records")  # id, action, label, line
        extra["corrections_file"] = str(Path(corrections).resolve())
    key = config_key(config)
    with ExitStack() as stack:
        with main_process_first():  # rank 0 claims the run folder; the other ranks join that same folder
            main = is_main_process()
            folder = stack.enter_context(claim_run(runs_dir, competition.name, name, key, fresh and main, lock=main))
            record = RunRecord(folder, config={**config, **extra}, config_key=key)
            record.save()
        yield record


def _correct(record: RunRecord, data: Data) -> Data:
    """The data with the run's recorded label corrections applied to its training table (the files untouched)."""
    if "corrections" not in record.config:
        return data
    data, changed = corrected(data, record.config["corrections"])
    write_csv(record.artifact("corrections", record.folder / "corrections_applied.csv"), changed)
    counts = changed["action"].value_counts()
    record.metrics["corrections"] = {action: int(counts.get(action, 0)) for action in ("exclude", "relabel")}
    record.notes.append(f"corrections applied: {counts.get('exclude', 0)} training rows excluded, "
                        f"{counts.get('relabel', 0)} relabelled; see corrections_applied.csv")  # fmt: skip
    return data


def _record_data(record: RunRecord, data: Data) -> None:
    """The data's shape in the record, and the rows that could not be used in files beside it."""
    items = data.items
    record.metrics["n_train"], record.metrics["n_test"] = len(items.train), len(items.test)
    record.metrics["image_cache"] = data.image_cache  # images decoded now, reused, unreadable, guessed at
    write_json(record.artifact("vocab", record.folder / "vocab.json"), data.vocab)
    if len(items.skipped):
        write_csv(record.artifact("skipped_items", record.folder / "skipped_items.csv"), items.skipped)
        record.notes.append(f"{len(items.skipped)} training rows skipped; see skipped_items.csv")
    record_undecodable(record, data)


def record_undecodable(record: RunRecord, data: Data) -> None:
    """Warn loudly about test images no member can read (they get the training prior), and list them in
    `undecodable_test.csv` beside the record."""
    if len(data.undecodable_test):
        write_csv(record.artifact("undecodable_test", record.folder / "undecodable_test.csv"), data.undecodable_test)
        log.warning("%d TEST image(s) could not be decoded and get the training prior as their prediction: %s. "
                    "See undecodable_test.csv in the run folder.", len(data.undecodable_test),
                    ", ".join(data.undecodable_test["id"].iloc[:10]))  # fmt: skip
        record.notes.append(f"{len(data.undecodable_test)} undecodable test images predicted with the training prior")


def record_submission(record: RunRecord, ensemble: EnsembleOutput, data: Data, name: str,
                      submissions_dir: Path | None) -> SubmissionOutput:  # fmt: skip
    """`write_and_check` the ensemble's submission and record the check; in a Kaggle notebook a file that passes is
    also published as /kaggle/working/submission.csv, the file a code competition scores."""
    written = write_and_check(ensemble, data, name, submissions_dir, record.folder)
    record.metrics["submission_check"] = written.check.to_dict()
    published = publish_submission(written.path) if written.check.ok else None
    if published is not None:
        record.artifact("kaggle_submission", published)
    return written


def _record_results(record: RunRecord, members: list[MemberOutput], ens: EnsembleOutput) -> None:
    metric = ens.competition.metric
    for m in members:
        record.metrics.setdefault("members", {})[m.name] = {
            f"valid_{metric}": m.valid_score, "valid_rows": m.valid_rows, "valid_accuracy_no_tta": m.task_scores,
            "train_seconds": m.train_seconds, "reused": m.reused, f"valid_{metric}_tta": m.tta_score,
            f"valid_{metric}_no_tta": m.plain_score, "tta_gain": m.tta_gain, "tta_used": m.tta_used,
            f"constant_prediction_{metric}": m.prior_score, "broken": m.broken, "in_ensemble": m.name in ens.members,
            "lr_found": lr_found(record.folder / "members" / m.name),
        }  # fmt: skip
        if m.last_epoch_scores:  # the saved model averages epochs: its score next to the last epoch's
            record.metrics["members"][m.name]["last_epoch_accuracy_no_tta"] = m.last_epoch_scores
        record.artifact(f"member:{m.name}", record.folder / "members" / m.name)
    record.metrics["ensemble_members"], record.metrics["excluded_members"] = ens.members, ens.excluded
    if ens.best_member is not None:
        record.metrics["best_member"] = {"name": ens.best_member[0], f"valid_{metric}": ens.best_member[1]}
    if ens.score_no_tta is not None:
        record.metrics[f"ensemble_valid_{metric}_no_tta"] = ens.score_no_tta
    if ens.tuned_weights:
        record.metrics["tuned_ensemble_weights"] = dict(zip(ens.members, ens.weights, strict=True))
    if ens.thresholds is not None:
        write_json(record.artifact("thresholds", record.folder / "thresholds.json"), ens.thresholds.to_dict())
        record.metrics["thresholds"] = {"chosen": ens.thresholds.chosen,
                                        f"valid_{metric}_global": ens.thresholds.global_score,
                                        f"valid_{metric}_per_tag": ens.thresholds.per_tag_score}  # fmt: skip
    if ens.score is not None:
        record.metrics[f"ensemble_valid_{metric}"], record.metrics["ensemble_valid_rows"] = ens.score, ens.rows
    record.notes.extend(ens.notes)


def _run_stages(record: RunRecord, competition: Competition, recipe: Recipe, data_dir: Path, answers: Path | None,
                submissions_dir: Path, name: str, report: bool = True) -> RunResult:  # fmt: skip
    """The stages of `run`, each saved in the record; the recipe is checked against the (corrected) data before any
    training, and the report is written last."""
    result = RunResult(competition, record.folder)
    with record.step("prepare_data"), main_process_first():  # rank 0 fills the image cache
        prepared = _correct(record, prepare_data(competition, data_dir, recipe=recipe))
        _record_data(record, prepared)
    check_recipe(recipe, prepared, answers)
    result.members = fit_members(recipe, prepared, record.folder, record)
    if not is_main_process():
        return result
    with record.step("ensemble"):
        result.ensemble = ensemble_members(result.members, recipe, prepared)
        result.ensemble.save(record.artifact("ensemble", record.folder / "ensemble"))
        _record_results(record, result.members, result.ensemble)
    with record.step("submission"):
        result.written = record_submission(record, result.ensemble, prepared, name, submissions_dir)
        if answers:
            truth = pd.read_csv(answers, dtype=str, keep_default_na=False)
            result.test_score = record.metrics[f"test_{competition.metric}"] = score_submission(
                result.written.frame, truth, competition
            )
    record.artifact("submission", result.submission)
    result.notes = list(result.ensemble.notes)
    record.status = "finished" if result.check.ok else "finished: submission check failed"
    record.save()
    if report:
        with record.step("report"):
            result.report = record.artifact("report", write_report(record.folder, prepared))
    return result


def run(
    competition: str | Competition,
    recipe: str | Path = "sample",
    data: Path | None = None,
    sample: bool = False,
    answers: Path | None = None,
    runs_dir: Path | None = None,
    submissions_dir: Path | None = None,
    name: str | None = None,
    fresh: bool = False,
    corrections: Path | None = None,
    report: bool = True,
) -> RunResult:
    """Locate data, split, train every member, TTA, ensemble, write and check the submission, write the report.

    `data` is the competition's folder (or one up to two levels above it); `sample` uses the bundled synthetic
    sample and scores against its hidden answers (as `answers` does for any CSV of test answers). Re-running
    the same call after an interruption continues the unfinished run (`fresh` starts a new one); the same call
    while that run is still going is refused. `corrections`: a CSV of `id,action,label` rows applied to the
    training table in memory (see `apply_corrections`). `report`: write report.html in the run folder. Raises a
    `KagglekitError` subclass for anything the user can fix, before any training where it can be found then (see
    `kagglekit.pipeline.preflight`).
    """
    competition = get_competition(competition) if isinstance(competition, str) else competition
    recipe = load_recipe(competition.recipe_path(str(recipe)))
    for member in recipe.members:  # before any data is read: tasks the competition has, settings its heads allow
        check_tasks(competition, member)
    name = name or recipe.name
    outputs = {"--runs": Path(runs_dir or default_runs_dir()), "--submissions": Path(submissions_dir or
               default_submissions_dir())}  # fmt: skip
    outputs["KAGGLEKIT_CACHE"] = cache_root()  # the image cache (and the sample)
    check_outputs(competition, outputs, name, answers)
    if sample:
        with main_process_first():  # rank 0 writes the sample, the other ranks find it
            sampled = ensure_sample(competition)
        data, answers = sampled.data_dir, answers or sampled.answers
    data_dir = locate_data(competition, data)
    opened = _open_record(competition, recipe, data_dir, answers, sample, outputs["--runs"], name, fresh, corrections)
    with explain_full_disk(list(outputs.values())), opened as record:
        return _run_stages(record, competition, recipe, data_dir, answers, outputs["--submissions"], name, report)
