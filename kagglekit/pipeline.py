"""`run`: the whole job, as a thin composition of the public steps a notebook user can call one by one."""

from __future__ import annotations

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
from kagglekit.files import atomic_write, write_json
from kagglekit.images import prepare_images
from kagglekit.items import Items, load_items, locate_data, vocabularies
from kagglekit.probabilities import Probabilities, ensemble
from kagglekit.recipe import Recipe, load_recipe
from kagglekit.registry import get_competition
from kagglekit.runs import RunRecord
from kagglekit.samples import cache_root, ensure_sample
from kagglekit.splits import load_splits, make_splits, save_splits
from kagglekit.submission import score_submission, to_submission, write_submission
from kagglekit.transforms import batch_transforms

log = logging.getLogger(__name__)

PRIORS_COMPARED = 5  # the most recent earlier submissions a run compares its file with


@dataclass
class MemberResult:
    name: str
    arch: str
    valid_score: float
    valid_score_plain: float | None  # fastai's last-epoch validation accuracy of the target, no TTA
    train_seconds: float


@dataclass
class RunResult:
    competition: Competition
    folder: Path
    metric: str
    members: list[MemberResult] = field(default_factory=list)
    ensemble_score: float | None = None
    submission: Path | None = None
    check: CheckReport | None = None
    test_score: float | None = None


def validation_answers(items: Items, splits: pd.DataFrame, competition: Competition) -> pd.DataFrame:
    """The validation rows' truth in the answers format (id column + target column)."""
    column = competition.tasks[competition.target_task].column
    valid_ids = set(splits.loc[splits["is_valid"], "id"])
    rows = items.train[items.train["id"].isin(valid_ids)]
    return pd.DataFrame({competition.id_column: rows["id"], column: rows[column]})


def validation_score(probs: Probabilities, answers: pd.DataFrame, competition: Competition) -> float:
    """Score validation probabilities exactly as the submission built from them would be scored."""
    return score_submission(to_submission(probs, competition), answers, competition)


def prepare_splits(items: Items, recipe: Recipe, competition: Competition, path: Path) -> pd.DataFrame:
    """The run's hold-out split: reused from `path` when it exists, so all members share one."""
    if path.is_file():
        return load_splits(path, items.train["id"])
    target = competition.tasks[competition.target_task]
    stratify = None
    if recipe.split == "stratified":
        if target.kind != "single":
            log.info(
                "Stratified splits need a single-label target; %s is multi-label, splitting at random.",
                target.column,
            )
        else:
            stratify = items.train[target.column]
    splits = make_splits(items.train["id"], recipe.valid_pct, recipe.seed, stratify=stratify)
    save_splits(splits, path)
    return splits


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


def run(
    competition: str | Competition,
    recipe: str | Path = "sample",
    data: Path | None = None,
    sample: bool = False,
    answers: Path | None = None,
    runs_dir: Path = Path("runs"),
    submissions_dir: Path = Path("submissions"),
    name: str | None = None,
) -> RunResult:
    """Locate data, split, train every member, TTA, ensemble, write and check the submission."""
    from kagglekit.prediction import predict_member  # torch and fastai load only when training starts
    from kagglekit.training import history_score, train_member

    competition = get_competition(competition) if isinstance(competition, str) else competition
    recipe = load_recipe(competition.recipe_path(str(recipe)))
    for member in recipe.members:  # fail before any training, not after the first member
        batch_transforms(member.aug, member.image_size)
    if sample:
        sampled = ensure_sample(competition)
        data, answers = sampled.data_dir, answers or sampled.answers
    data_dir = locate_data(competition, data)

    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder = Path(runs_dir) / competition.name / f"{stamp}_{name or recipe.name}"
    record = RunRecord(
        folder,
        config={
            "competition": competition.name,
            "command": shlex.join(sys.argv),
            "data_dir": str(data_dir.resolve()),
            "sample": sample,
            "answers": str(answers) if answers else None,
            "recipe": recipe.to_dict(),
        },
    )
    result = RunResult(competition, folder, competition.metric)
    with record.step("load_items"):
        items = load_items(competition, data_dir)
        vocab = vocabularies(competition, items)
    with record.step("prepare_images"):
        prepared = prepare_images(competition, items, cache_root() / "images")
        items, undecodable = prepared.items, prepared.undecodable_test
        if len(undecodable):
            atomic_write(
                record.artifact("undecodable_test", folder / "undecodable_test.csv"),
                lambda t: undecodable.to_csv(t, index=False),
            )
            log.warning(
                "%d TEST image(s) could not be decoded and get the training prior as their prediction: %s. "
                "See undecodable_test.csv in the run folder.", len(undecodable), ", ".join(undecodable["id"].iloc[:10]),
            )  # fmt: skip
            record.notes.append(f"{len(undecodable)} undecodable test images predicted with the training prior")
        write_json(record.artifact("vocab", folder / "vocab.json"), vocab)
        if len(items.skipped):
            atomic_write(
                record.artifact("skipped_items", folder / "skipped_items.csv"),
                lambda t: items.skipped.to_csv(t, index=False),
            )
            record.notes.append(f"{len(items.skipped)} training rows skipped; see skipped_items.csv")
        record.metrics["n_train"], record.metrics["n_test"] = len(items.train), len(items.test)
    with record.step("splits"):
        splits = prepare_splits(items, recipe, competition, record.artifact("splits", folder / "splits.csv"))
        valid_answers = validation_answers(items, splits, competition)
        valid_items = items.train[items.train["id"].isin(set(valid_answers[competition.id_column]))]

    valid_probs, test_probs = [], []
    for member in recipe.members:
        member_dir = folder / "members" / member.name
        with record.step(f"train:{member.name}"):
            learn = train_member(
                member,
                competition,
                items.train,
                splits,
                vocab,
                member_dir,
                recipe.member_seed(member),
                recipe.num_workers,
            )
        with record.step(f"tta:{member.name}"):
            valid = predict_member(learn, valid_items, recipe.tta, label=f"{member.name} valid TTA")
            test = predict_member(learn, items.test, recipe.tta, label=f"{member.name} test TTA")
            valid.save(member_dir, "valid")
            test.save(member_dir, "test")
        score = validation_score(valid, valid_answers, competition)
        plain, seconds = history_score(member_dir, competition.target_task)
        result.members.append(MemberResult(member.name, member.arch, score, plain, seconds))
        record.metrics.setdefault("members", {})[member.name] = {
            f"valid_{competition.metric}": score, "valid_accuracy_no_tta": plain, "train_seconds": seconds,
        }  # fmt: skip
        record.artifact(f"member:{member.name}", member_dir)
        valid_probs.append(valid)
        test_probs.append(test)

    with record.step("ensemble"):
        weights = [m.weight for m in recipe.members]
        valid_ensemble, test_ensemble = ensemble(valid_probs, weights), ensemble(test_probs, weights)
        if len(undecodable):
            test_ensemble = test_ensemble.concat(
                training_prior(items, competition, test_ensemble.vocab, undecodable["id"].tolist())
            )
        valid_ensemble.save(folder / "ensemble", "valid")
        test_ensemble.save(folder / "ensemble", "test")
        result.ensemble_score = validation_score(valid_ensemble, valid_answers, competition)
        record.metrics[f"ensemble_valid_{competition.metric}"] = result.ensemble_score

    with record.step("submission"):
        frame = to_submission(test_ensemble, competition, template=items.sample_submission)
        priors = sorted((Path(submissions_dir) / competition.name).glob("*.csv"))[-PRIORS_COMPARED:]
        result.submission = write_submission(frame, competition, name or recipe.name, submissions_dir)
        record.artifact("submission", result.submission)
        result.check = check_submission(
            result.submission,
            competition,
            items.sample_submission,
            against=priors,
            classes=vocab[competition.target_task],
        )
        record.metrics["submission_check"] = result.check.to_dict()
        if answers:
            result.test_score = score_submission(
                frame, pd.read_csv(answers, dtype=str, keep_default_na=False), competition
            )
            record.metrics[f"test_{competition.metric}"] = result.test_score
    record.status = "finished" if result.check.ok else "finished: submission check failed"
    record.save()
    return result
