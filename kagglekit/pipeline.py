"""`run`: the whole job, as a thin composition of the public steps a notebook user can call one by one."""

from __future__ import annotations

import hashlib
import json
import logging
import shlex
import sys
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path

import numpy as np
import pandas as pd

from kagglekit.checks import CheckReport, check_submission
from kagglekit.competition import Competition
from kagglekit.distributed import is_main_process, main_process_alone, main_process_first
from kagglekit.files import atomic_write, write_json
from kagglekit.images import prepare_images
from kagglekit.items import Items, load_items, locate_data, vocabularies
from kagglekit.kaggle_env import default_dirs, publish_submission
from kagglekit.metrics import get_metric
from kagglekit.probabilities import Probabilities, ensemble, item_losses, tune_weights
from kagglekit.recipe import Member, Recipe, load_recipe
from kagglekit.registry import get_competition
from kagglekit.runs import RunRecord
from kagglekit.samples import cache_root, ensure_sample
from kagglekit.splits import load_splits, make_folds, make_splits, save_splits
from kagglekit.submission import score_submission, to_submission, write_submission
from kagglekit.thresholds import Thresholds, label_matrix, tune_for_metric
from kagglekit.transforms import batch_transforms

log = logging.getLogger(__name__)

PRIORS_COMPARED = 5  # the most recent earlier submissions a run compares its file with


@dataclass
class MemberResult:
    name: str
    arch: str
    valid_score: float
    valid_rows: int  # rows its validation score is computed on (all rows for out-of-fold predictions)
    task_scores: dict[str, float]  # plain validation accuracy per task, from the last epoch (no TTA)
    train_seconds: float
    reused: bool = False


@dataclass
class RunResult:
    competition: Competition
    folder: Path
    metric: str
    members: list[MemberResult] = field(default_factory=list)
    ensemble_score: float | None = None  # None: no row was held out from every member
    ensemble_rows: int = 0
    tuned_weights: list[float] | None = None
    thresholds: Thresholds | None = None
    submission: Path | None = None
    check: CheckReport | None = None
    test_score: float | None = None
    notes: list[str] = field(default_factory=list)


def answers_for(items: Items, ids: list[str], competition: Competition) -> pd.DataFrame:
    """The truth of training rows `ids` in the answers format (id column + target column)."""
    column = competition.tasks[competition.target_task].column
    rows = items.train.set_index("id").loc[ids]
    return pd.DataFrame({competition.id_column: ids, column: rows[column].to_numpy()})


def validation_score(
    probs: Probabilities, items: Items, competition: Competition, thresholds: np.ndarray | float = 0.5
) -> float:
    """Score validation probabilities exactly as the submission built from them would be scored."""
    frame = to_submission(probs, competition, thresholds=thresholds)
    return score_submission(frame, answers_for(items, probs.ids, competition), competition)


def _stratify(items: Items, recipe: Recipe, competition: Competition) -> pd.Series | None:
    target = competition.tasks[competition.target_task]
    if recipe.split != "stratified":
        return None
    if target.kind != "single":
        log.info("Stratified splits need a single-label target; %s is multi-label, splitting at random.", target.column)
        return None
    return items.train[target.column]


def member_splits(
    member: Member, recipe: Recipe, items: Items, competition: Competition, folder: Path
) -> list[tuple[str, pd.Series]]:
    """(part name, is_valid per training row) for each model the member trains, persisted in `folder`.

    The recipe's hold-out split (shared by default, so members are judged on the same rows), the member's
    own seeded split (split ensembles), or k folds (one part per fold; the parts' validation rows together
    cover every row once: out-of-fold predictions).
    """
    ids, stratify = items.train["id"], _stratify(items, recipe, competition)
    if member.folds:
        path = folder / f"folds-k{member.folds}-seed{recipe.seed}.csv"
        folds = load_splits(path, ids) if path.is_file() else make_folds(ids, member.folds, recipe.seed, stratify)
        save_splits(folds, path)
        fold = ids.map(folds.set_index("id")["fold"])
        return [(f"fold{k}", fold == k) for k in range(member.folds)]
    seed = recipe.seed if member.split_seed is None else member.split_seed
    path = folder / ("splits.csv" if member.split_seed is None else f"splits-seed{seed}.csv")
    splits = load_splits(path, ids) if path.is_file() else make_splits(ids, recipe.valid_pct, seed, stratify)
    save_splits(splits, path)
    return [("", ids.map(splits.set_index("id")["is_valid"]).astype(bool))]


def training_prior(
    items: Items, competition: Competition, vocab: dict[str, list[str]], ids: list[str]
) -> Probabilities:
    """Every task's class frequencies in the training rows, as the prediction for `ids`."""
    tasks = {}
    for name, classes in vocab.items():
        task = competition.tasks[name]
        labels = items.train[task.column]
        if task.kind == "multi":
            labels = labels.str.split(task.label_delim).explode()
        share = labels.value_counts().reindex(classes, fill_value=0).to_numpy(dtype=np.float32) / len(items.train)
        if task.kind == "single":
            share = share / share.sum()
        tasks[name] = np.tile(share, (len(ids), 1))
    return Probabilities(list(ids), tasks, vocab)


def _finished(part_dir: Path) -> bool:
    return (part_dir / "member.json").is_file() and (part_dir / "test_ids.csv").is_file()


def _config_key(config: dict) -> str:
    return hashlib.sha256(json.dumps(config, sort_keys=True, default=str).encode()).hexdigest()[:12]


def _run_folder(runs_dir: Path, competition: Competition, label: str, key: str, fresh: bool) -> Path:
    """The unfinished run of the same configuration (resume), else a new timestamped folder."""
    if not fresh:
        for record in sorted((Path(runs_dir) / competition.name).glob("*/run.json"), reverse=True):
            saved = json.loads(record.read_text())
            if saved.get("config_key") == key and saved.get("status") != "finished":
                log.info("Resuming the unfinished run in %s (use --fresh to start over)", record.parent)
                return record.parent
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return Path(runs_dir) / competition.name / f"{stamp}_{label}"


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
) -> RunResult:
    """Locate data, split, train every member, TTA, ensemble, write and check the submission.

    Re-running the same command after an interruption continues the unfinished run: finished members
    (and folds) are reused and an interrupted one resumes after its last completed epoch.
    """
    from kagglekit.prediction import predict_member  # torch and fastai load only when training starts
    from kagglekit.training import clear_checkpoint, history_scores, sampling_weights, train_member

    competition = get_competition(competition) if isinstance(competition, str) else competition
    default_runs, default_submissions = default_dirs()  # in a Kaggle notebook: under /kaggle/working
    runs_dir, submissions_dir = runs_dir or default_runs, submissions_dir or default_submissions
    recipe_path = competition.recipe_path(str(recipe))
    recipe = load_recipe(recipe_path)
    for member in recipe.members:  # fail before any training, not after the first member
        batch_transforms(member.aug, member.image_size)
    if sample:
        with main_process_first():  # rank 0 writes the sample, the other ranks find it
            sampled = ensure_sample(competition)
        data, answers = sampled.data_dir, answers or sampled.answers
    data_dir = locate_data(competition, data)

    config = {
        "competition": competition.name,
        "data_dir": str(data_dir.resolve()),
        "sample": sample,
        "answers": str(answers) if answers else None,
        "recipe": recipe.to_dict(),
    }
    key = _config_key(config)
    with main_process_first():  # rank 0 creates the run folder; the other ranks resume that same folder
        folder = _run_folder(runs_dir, competition, name or recipe.name, key, fresh and is_main_process())
        record = RunRecord(folder, config={**config, "command": shlex.join(sys.argv)}, config_key=key)
        record.save()
    result = RunResult(competition, folder, competition.metric)
    target = competition.target_task

    with record.step("load_items"):
        items = load_items(competition, data_dir)
        vocab = vocabularies(competition, items)
        if is_main_process():
            write_json(record.artifact("vocab", folder / "vocab.json"), vocab)
    with record.step("prepare_images"), main_process_first():  # rank 0 fills the DICOM cache
        prepared = prepare_images(competition, items, cache_root() / "images")
        items, undecodable = prepared.items, prepared.undecodable_test
        if len(items.skipped):
            path = record.artifact("skipped_items", folder / "skipped_items.csv")
            atomic_write(path, lambda t: items.skipped.to_csv(t, index=False))
            record.notes.append(f"{len(items.skipped)} training rows skipped; see skipped_items.csv")
        if len(undecodable):
            path = record.artifact("undecodable_test", folder / "undecodable_test.csv")
            atomic_write(path, lambda t: undecodable.to_csv(t, index=False))
            log.warning(
                "%d TEST image(s) could not be decoded and get the training prior as their prediction: %s. "
                "See undecodable_test.csv in the run folder.", len(undecodable), ", ".join(undecodable["id"].iloc[:10]),
            )  # fmt: skip
            record.notes.append(f"{len(undecodable)} undecodable test images predicted with the training prior")
        record.metrics["n_train"], record.metrics["n_test"] = len(items.train), len(items.test)

    valid_probs, test_probs, previous_losses = [], [], None
    for number, member in enumerate(recipe.members):
        member_dir = folder / "members" / member.name
        needs_losses = number + 1 < len(recipe.members) and recipe.members[number + 1].sampling == "loss"
        parts_valid, parts_test, reused = [], [], True
        for part, is_valid in member_splits(member, recipe, items, competition, folder):
            part_dir = member_dir / part if part else member_dir
            label = f"{member.name}{'/' + part if part else ''}"
            losses_file = part_dir / "train_losses.csv"
            if _finished(part_dir) and (losses_file.is_file() or not needs_losses):
                log.info("Reusing finished member %s", label)
                parts_valid.append(Probabilities.load(part_dir, "valid"))
                parts_test.append(Probabilities.load(part_dir, "test"))
                if needs_losses:
                    previous_losses = pd.read_csv(losses_file, dtype={"id": str}).set_index("id")["loss"]
                continue
            reused = False
            weights = None
            if member.sampling != "none" and is_main_process():  # DistributedDL uses rank 0's order
                weights = sampling_weights(member, items.train, competition.tasks[target].column, previous_losses)
            with record.step(f"train:{label}"):
                learn = train_member(
                    member, competition, items.train, is_valid, vocab, part_dir,
                    recipe.member_seed(member), recipe.num_workers, weights,
                )  # fmt: skip
            if not is_main_process():
                continue  # the other ranks only help train; rank 0 predicts and writes
            with record.step(f"tta:{label}"), main_process_alone():
                valid = predict_member(learn, items.train[is_valid.to_numpy()], recipe.tta, label=f"{label} valid TTA")
                test = predict_member(learn, items.test, recipe.tta, label=f"{label} test TTA")
                valid.save(part_dir, "valid")
                test.save(part_dir, "test")
                clear_checkpoint(part_dir)
            if needs_losses:
                with main_process_alone():
                    plain = predict_member(learn, items.train, 0, label=f"{label} training losses")
                truth = answers_for(items, plain.ids, competition)[competition.tasks[target].column]
                losses = item_losses(plain.tasks[target], truth, plain.vocab[target], competition.tasks[target].kind)
                previous_losses = pd.Series(losses, index=pd.Index(plain.ids, name="id"), name="loss")
                atomic_write(losses_file, lambda t, f=previous_losses: f.to_csv(t))
            parts_valid.append(valid)
            parts_test.append(test)
        if not is_main_process():
            continue
        valid = parts_valid[0].concat(*parts_valid[1:])  # folds: their validation rows together are out-of-fold
        test = ensemble(parts_test)  # fold models averaged
        if len(parts_valid) > 1:
            valid.save(member_dir, "valid")
            test.save(member_dir, "test")
        score = validation_score(valid, items, competition)
        plain_scores, seconds = history_scores(
            [member_dir / f"fold{k}" for k in range(member.folds)] if member.folds else [member_dir]
        )
        result.members.append(
            MemberResult(member.name, member.arch, score, len(valid.ids), plain_scores, seconds, reused)
        )
        record.metrics.setdefault("members", {})[member.name] = {
            f"valid_{competition.metric}": score, "valid_rows": len(valid.ids),
            "valid_accuracy_no_tta": plain_scores, "train_seconds": seconds, "reused": reused,
        }  # fmt: skip
        record.artifact(f"member:{member.name}", member_dir)
        valid_probs.append(valid)
        test_probs.append(test)

    if not is_main_process():
        return result
    with record.step("ensemble"):
        weights = [m.weight for m in recipe.members]
        valid_ensemble = ensemble(valid_probs, weights)
        result.ensemble_rows = len(valid_ensemble.ids)
        if result.ensemble_rows == 0:
            note = (
                "No training row was held out from every member (different splits share no validation rows), "
                "so there is no honest ensemble validation score. Use a shared split or folds."
            )
            log.warning(note)
            result.notes.append(note)
        else:
            if recipe.ensemble_weights == "tuned" and len(valid_probs) > 1:
                weights = tune_weights(
                    [v.subset(valid_ensemble.ids) for v in valid_probs],
                    lambda p: validation_score(p, items, competition),
                    greater_is_better=get_metric(competition.metric).greater_is_better,
                )
                result.tuned_weights = weights
                record.metrics["tuned_ensemble_weights"] = dict(
                    zip([m.name for m in recipe.members], weights, strict=True)
                )
                result.notes.append(
                    "ensemble weights were tuned on the validation rows they are scored on (optimistic)"
                )
                valid_ensemble = ensemble(valid_probs, weights)
            thresholds = 0.5
            if competition.submission.kind == "tags":
                task = competition.tasks[target]
                classes = valid_ensemble.vocab[target]
                truth = answers_for(items, valid_ensemble.ids, competition)[task.column]
                truth_matrix = label_matrix(truth, classes, task.label_delim)
                result.thresholds = tune_for_metric(
                    competition.metric, valid_ensemble.tasks[target], truth_matrix, classes=classes
                )
                thresholds = result.thresholds.thresholds
                write_json(record.artifact("thresholds", folder / "thresholds.json"), result.thresholds.to_dict())
                record.metrics["thresholds"] = {
                    "chosen": result.thresholds.chosen,
                    f"valid_{competition.metric}_global": result.thresholds.global_score,
                    f"valid_{competition.metric}_per_tag": result.thresholds.per_tag_score,
                }
            result.ensemble_score = validation_score(valid_ensemble, items, competition, thresholds)
            record.metrics[f"ensemble_valid_{competition.metric}"] = result.ensemble_score
            record.metrics["ensemble_valid_rows"] = result.ensemble_rows
        test_ensemble = ensemble(test_probs, weights)
        if len(undecodable):
            fallback = training_prior(items, competition, test_ensemble.vocab, undecodable["id"].tolist())
            test_ensemble = test_ensemble.concat(fallback)
        valid_ensemble.save(folder / "ensemble", "valid")
        test_ensemble.save(folder / "ensemble", "test")

    with record.step("submission"):
        thresholds = result.thresholds.thresholds if result.thresholds else 0.5
        frame = to_submission(test_ensemble, competition, template=items.sample_submission, thresholds=thresholds)
        priors = sorted((Path(submissions_dir) / competition.name).glob("*.csv"))[-PRIORS_COMPARED:]
        result.submission = write_submission(frame, competition, name or recipe.name, submissions_dir)
        record.artifact("submission", result.submission)
        result.check = check_submission(
            result.submission, competition, items.sample_submission, against=priors, classes=vocab[target]
        )
        record.metrics["submission_check"] = result.check.to_dict()
        published = publish_submission(result.submission) if result.check.ok else None
        if published is not None:  # in a Kaggle notebook: the file a code competition scores
            record.artifact("kaggle_submission", published)
        if answers:
            truth = pd.read_csv(answers, dtype=str, keep_default_na=False)
            result.test_score = score_submission(frame, truth, competition)
            record.metrics[f"test_{competition.metric}"] = result.test_score
    record.notes.extend(result.notes)
    record.status = "finished" if result.check.ok else "finished: submission check failed"
    record.save()
    return result
