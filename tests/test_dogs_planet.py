"""Dog Breed Identification (probabilities, log loss) and Planet (tags, F2): layouts, submissions, checks,
per-tag threshold tuning, and the recipes they ship."""

from __future__ import annotations

import json
import math
import re
import time
import warnings
from pathlib import Path

import kagglekit.competitions.dogs as dogs_module
import numpy as np
import pandas as pd
import pytest
from PIL import Image
from sklearn.metrics import fbeta_score
from typer.testing import CliRunner

from kagglekit import cli, get_competition, list_competitions, load_items, load_recipe, write_sample
from kagglekit.ensemble import Probabilities
from kagglekit.ensemble.thresholds import COUNT_METRICS, Thresholds, label_matrix, tune_for_metric, tune_thresholds
from kagglekit.samples import SampleData
from kagglekit.submission import score_submission, to_submission
from kagglekit.submission.checks import check_submission
from kagglekit.submission.metrics import METRICS, f2_samples, get_metric

PLANET_TAGS = [
    "agriculture", "artisinal_mine", "bare_ground", "blooming", "blow_down", "clear", "cloudy", "conventional_mine",
    "cultivation", "habitation", "haze", "partly_cloudy", "primary", "road", "selective_logging", "slash_burn", "water",
]  # fmt: skip
WEATHER = {"clear", "cloudy", "haze", "partly_cloudy"}
HEX_ID = re.compile(r"^[0-9a-f]{32}$")


@pytest.fixture(scope="module")
def dogs():
    return get_competition("dogs")


@pytest.fixture(scope="module")
def planet():
    return get_competition("planet")


@pytest.fixture(scope="module")
def dogs_sample(tmp_path_factory, dogs) -> SampleData:
    return write_sample(dogs, tmp_path_factory.mktemp("dogs-sample"), seed=3, n_train=60, n_test=20)


@pytest.fixture(scope="module")
def planet_sample(tmp_path_factory, planet) -> SampleData:
    return write_sample(planet, tmp_path_factory.mktemp("planet-sample"), seed=3, n_train=60, n_test=20)


def _read(path: Path) -> pd.DataFrame:
    return pd.read_csv(path, dtype=str, keep_default_na=False)


def _files(folder: Path) -> set[str]:
    return {p.name for p in folder.iterdir()}


# --- registration -------------------------------------------------------------------------------------------


def test_both_plugins_are_registered_and_listed(dogs, planet, monkeypatch):
    assert {"dogs", "planet"} <= set(list_competitions())
    assert get_competition("dog-breed-identification").name == "dogs"
    assert get_competition("planet-understanding-the-amazon-from-space").name == "planet"
    assert (dogs.metric, dogs.submission.kind, planet.metric, planet.submission.kind) == (
        "log_loss", "probs", "f2_samples", "tags",
    )  # fmt: skip
    assert planet.tasks["tags"].kind == "multi" and list(planet.tasks["tags"].classes) == PLANET_TAGS
    monkeypatch.setattr(cli.console, "width", 250)
    result = CliRunner().invoke(cli.app, ["list"])
    assert result.exit_code == 0, result.output
    assert "dog-breed-identification" in result.output and "planet-understanding-the-amazon-from-space" in result.output


@pytest.mark.parametrize("name", ["dogs", "planet"])
def test_every_shipped_recipe_parses(name):
    competition = get_competition(name)
    recipes = sorted(competition.recipes_dir.glob("*.toml"))
    assert {p.stem for p in recipes} >= {"sample", "gpu"}
    for path in recipes:
        recipe = load_recipe(path)
        assert recipe.members
    sample, gpu = load_recipe(competition.recipe_path("sample")), load_recipe(competition.recipe_path("gpu"))
    assert all(not m.pretrained and m.image_size == (64, 64) for m in sample.members)
    assert all(m.pretrained for m in gpu.members) and gpu.tta > 0
    if name == "planet":
        assert all(m.aug == "overhead" for m in (*sample.members, *gpu.members))


# --- the samples match the real layouts -----------------------------------------------------------------------


def test_dogs_sample_has_the_real_layout(dogs_sample):
    root = dogs_sample.data_dir
    assert root.name == "dog-breed-identification"
    assert _files(root) == {"labels.csv", "train", "test", "sample_submission.csv"}
    labels = _read(root / "labels.csv")
    assert list(labels.columns) == ["id", "breed"]
    assert labels["id"].map(HEX_ID.match).all() and labels["id"].is_unique
    assert _files(root / "train") == {f"{i}.jpg" for i in labels["id"]}
    breeds = sorted(set(labels["breed"]))
    assert 8 <= len(breeds) <= 12 and any("-" in b for b in breeds)  # hyphens kept, e.g. shih-tzu
    sample = _read(root / "sample_submission.csv")
    assert list(sample.columns) == ["id", *breeds]  # sorted breed columns, as Kaggle ships it
    assert sample["id"].map(HEX_ID.match).all()
    assert _files(root / "test") == {f"{i}.jpg" for i in sample["id"]}
    answers = _read(dogs_sample.answers)
    assert list(answers.columns) == ["id", "breed"] and set(answers["id"]) == set(sample["id"])
    sizes = {Image.open(root / "train" / f"{i}.jpg").size for i in labels["id"]}
    assert len({w for w, _ in sizes}) > 5 and len({round(w / h, 1) for w, h in sizes}) > 3  # sizes and shapes vary


def test_dogs_sample_works_without_the_real_labels(monkeypatch, dogs):
    monkeypatch.setattr(dogs_module, "REAL_LABELS", Path("/nonexistent/labels.csv"))
    spec = dogs.make_sample(np.random.default_rng(0), 50, 10)
    assert spec.train["id"].map(HEX_ID.match).all() and spec.answers["id"].map(HEX_ID.match).all()
    assert set(spec.train["breed"]) == set(dogs_module.BREEDS)


def test_dogs_sample_breeds_are_real_names():
    if not dogs_module.REAL_LABELS.is_file():
        pytest.skip("the real labels.csv is not in this checkout's shared folder")
    real = pd.read_csv(dogs_module.REAL_LABELS, dtype=str)
    assert set(dogs_module.BREEDS) <= set(real["breed"])
    spec = get_competition("dogs").make_sample(np.random.default_rng(0), 60, 5)
    pairs = set(zip(real["id"], real["breed"], strict=True))
    assert all((i, b) in pairs for i, b in zip(spec.train["id"], spec.train["breed"], strict=True))


def test_planet_sample_has_the_real_layout(planet_sample):
    root = planet_sample.data_dir
    assert root.name == "planet-understanding-the-amazon-from-space"
    assert _files(root) == {"train_v2.csv", "train-jpg", "test-jpg", "test-jpg-additional", "sample_submission_v2.csv"}
    train = _read(root / "train_v2.csv")
    assert list(train.columns) == ["image_name", "tags"]
    assert train["image_name"].tolist() == [f"train_{i}" for i in range(len(train))]
    assert _files(root / "train-jpg") == {f"{n}.jpg" for n in train["image_name"]}
    for tags in train["tags"]:
        assert set(tags.split()) <= set(PLANET_TAGS) and tags == " ".join(sorted(tags.split()))
        assert len(set(tags.split()) & WEATHER) == 1, tags  # exactly one weather tag
    assert Image.open(root / "train-jpg" / "train_0.jpg").size == (256, 256)
    sample = _read(root / "sample_submission_v2.csv")
    assert list(sample.columns) == ["image_name", "tags"]
    first, additional = _files(root / "test-jpg"), _files(root / "test-jpg-additional")
    assert first and additional  # the test set spans both folders
    assert all(re.fullmatch(r"test_\d+\.jpg", n) for n in first)
    assert all(re.fullmatch(r"file_\d+\.jpg", n) for n in additional)
    assert {f"{n}.jpg" for n in sample["image_name"]} == first | additional
    assert sample["image_name"].iloc[0] == "test_0" and sample["image_name"].iloc[-1].startswith("file_")


def test_load_items_resolves_every_path(dogs, dogs_sample, planet, planet_sample):
    for competition, sample in ((dogs, dogs_sample), (planet, planet_sample)):
        items = load_items(competition, sample.data_dir)
        assert len(items.skipped) == 0 and len(items.test) == 20
        assert all(Path(p).is_file() for p in [*items.train["path"], *items.test["path"]])
    planet_items = load_items(planet, planet_sample.data_dir)
    assert {Path(p).parent.name for p in planet_items.test["path"]} == {"test-jpg", "test-jpg-additional"}


# --- submissions -------------------------------------------------------------------------------------------------


def _dogs_probs(ids: list[str], vocab: list[str], rng: np.random.Generator) -> Probabilities:
    logits = rng.normal(0, 2, (len(ids), len(vocab)))
    probs = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
    return Probabilities(ids, {"breed": probs.astype(np.float32)}, {"breed": vocab})


@pytest.mark.parametrize("renamed", ["test-jpg-v2", "test_jpg_v3"])
def test_planet_test_folder_variants(planet, planet_sample, tmp_path, renamed):
    """Kaggle's notebook input and public copies name the first test folder test-jpg-v2/: it is found. An unknown
    name is an error that names the folders searched and the folder the files are in."""
    import shutil

    from kagglekit.errors import DataError

    data = tmp_path / "planet"
    shutil.copytree(planet_sample.data_dir, data)
    (data / "test-jpg").rename(data / renamed)
    if renamed == "test-jpg-v2":
        items = load_items(planet, data)
        assert items.test["path"].str.contains("/test-jpg-v2/test_").sum() == len(list((data / renamed).iterdir()))
        return
    with pytest.raises(DataError) as error:
        load_items(planet, data)
    message = str(error.value)
    assert "Searched test-jpg/, test-jpg-additional/, test-jpg-v2/" in message
    assert "(test-jpg/, test-jpg-v2/ missing); similarly named: test_jpg_v3/" in message
    assert f"({len(list((data / renamed).iterdir()))} in test_jpg_v3/)" in message


def test_dogs_submission_follows_the_sample_submission(dogs, dogs_sample):
    sample = _read(dogs_sample.data_dir / "sample_submission.csv")
    breeds = [c for c in sample.columns if c != "id"]
    vocab = breeds[::-1]  # the model's class order differs from the file's
    ids = sample["id"].tolist()[::-1]
    probs = _dogs_probs(ids, vocab, np.random.default_rng(0))
    frame = to_submission(probs, dogs, template=sample)
    assert list(frame.columns) == list(sample.columns) and frame["id"].tolist() == sample["id"].tolist()
    values = frame[breeds].to_numpy()
    assert np.all((values >= 0) & (values <= 1)) and np.allclose(values.sum(axis=1), 1, atol=1e-6)
    row = ids.index(sample["id"].iloc[0])
    assert np.allclose(values[0], probs.tasks["breed"][row][[vocab.index(b) for b in breeds]], atol=1e-3)
    assert not any("." in i for i in frame["id"])  # ids without the .jpg extension


def test_dogs_submission_clips_extreme_probabilities(dogs, dogs_sample, tmp_path):
    sample = _read(dogs_sample.data_dir / "sample_submission.csv")
    breeds = [c for c in sample.columns if c != "id"]
    extreme = np.zeros((len(sample), len(breeds)), dtype=np.float32)
    extreme[np.arange(len(sample)), np.arange(len(sample)) % len(breeds)] = 1.0  # one-hot: exact 0s and 1s
    probs = Probabilities(sample["id"].tolist(), {"breed": extreme}, {"breed": breeds})
    frame = to_submission(probs, dogs, template=sample)
    values = frame[breeds].to_numpy()
    assert values.min() > 0 and values.max() < 1 and np.allclose(values.sum(axis=1), 1, atol=1e-6)
    # a confidently wrong answer costs at most -ln(clip), not infinity
    wrong = pd.DataFrame({"id": sample["id"], "breed": [breeds[(i + 1) % len(breeds)] for i in range(len(sample))]})
    loss = score_submission(frame, wrong, dogs)
    assert math.isfinite(loss) and loss <= -math.log(dogs.submission.clip) + 0.01
    frame.to_csv(tmp_path / "extreme.csv", index=False)
    assert check_submission(tmp_path / "extreme.csv", dogs, sample).ok


def test_planet_tags_are_never_empty(planet, planet_sample):
    sample = _read(planet_sample.data_dir / "sample_submission_v2.csv")
    rng = np.random.default_rng(0)
    low = rng.uniform(0, 0.05, (len(sample), len(PLANET_TAGS))).astype(np.float32)  # nothing above 0.5
    probs = Probabilities(sample["image_name"].tolist(), {"tags": low}, {"tags": PLANET_TAGS})
    for thresholds in (0.5, np.full(len(PLANET_TAGS), 0.99)):
        frame = to_submission(probs, planet, template=sample, thresholds=thresholds)
        assert (frame["tags"].str.strip() != "").all()
    frame = to_submission(probs, planet, template=sample, thresholds=0.0)
    assert frame["tags"].map(lambda cell: cell.split() == PLANET_TAGS).all()


# --- metric and thresholds ---------------------------------------------------------------------------------------


def test_f2_samples_is_sklearns_samples_average_not_macro():
    rng = np.random.default_rng(0)
    truth = rng.random((300, 17)) < 0.25
    pred = rng.random((300, 17)) < 0.35
    truth[np.arange(300), rng.integers(0, 17, 300)] = True  # every image has a tag, as in Planet
    as_sets = [[{PLANET_TAGS[j] for j in np.flatnonzero(row)} for row in matrix] for matrix in (truth, pred)]
    samples = fbeta_score(truth, pred, beta=2, average="samples", zero_division=0)
    assert f2_samples(*as_sets) == pytest.approx(samples, abs=1e-12)
    assert get_metric("f2_samples")(*as_sets) == pytest.approx(samples, abs=1e-12)
    assert abs(samples - fbeta_score(truth, pred, beta=2, average="macro", zero_division=0)) > 1e-3


def _noisy(rng: np.random.Generator, n: int, rates: np.ndarray, offsets: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Probabilities and truth for `n` images: tags at `rates`, each tag's calibration shifted by `offsets`."""
    truth = rng.random((n, len(rates))) < rates
    logits = np.where(truth, 1.5, -1.5) + rng.normal(0, 1.2, truth.shape) + offsets
    return 1 / (1 + np.exp(-logits)), truth.astype(np.int8)


def test_global_threshold_recovers_a_known_cut():
    rng = np.random.default_rng(1)
    probs = rng.random((2000, 17))
    truth = (probs >= 0.3).astype(np.int8)  # the perfect cut is exactly 0.30
    tuned = tune_thresholds(probs, truth)
    assert tuned.global_threshold == pytest.approx(0.30) and tuned.global_score == pytest.approx(1.0)
    assert tuned.chosen == "global" and np.allclose(tuned.thresholds, 0.30)


def test_per_tag_thresholds_recover_known_cuts_per_tag():
    rng = np.random.default_rng(2)
    cuts = np.array([0.2, 0.4, 0.6])
    probs = rng.random((3000, 3))
    truth = (probs >= cuts).astype(np.int8)
    tuned = tune_thresholds(probs, truth, classes=["a", "b", "c"])
    assert tuned.chosen == "per_tag" and tuned.per_tag_score > tuned.global_score
    assert np.allclose(tuned.per_tag, cuts, atol=0.02)
    assert np.allclose(tuned.thresholds, tuned.per_tag)


@pytest.mark.parametrize("seed", range(5))
def test_per_tag_never_scores_below_global_on_validation(seed):
    rng = np.random.default_rng(seed)
    rates = np.r_[0.9, 0.7, 0.3, 0.2, 0.2, 0.1, 0.1, 0.05, 0.05, 0.02, 0.01, 0.01, 0.005, 0.005, 0.003, 0.003, 0.002]
    probs, truth = _noisy(rng, 800, rates, rng.normal(0, 1, 17))
    tuned = tune_thresholds(probs, truth)
    assert tuned.per_tag_score >= tuned.global_score
    assert tuned.chosen == ("per_tag" if tuned.per_tag_score > tuned.global_score else "global")
    assert tuned.score == max(tuned.per_tag_score, tuned.global_score)


def test_rare_tags_keep_the_global_threshold_and_others_shrink_towards_it():
    rng = np.random.default_rng(3)
    probs, truth = _noisy(rng, 1000, np.array([0.8, 0.4, 0.3, 0.02]), np.array([0.0, 1.5, -1.5, 0.0]))
    rare = np.flatnonzero(truth[:, 3])[:4]  # the last tag: 4 positives, scored perfectly at a high threshold
    truth[:, 3] = 0
    truth[rare, 3] = 1
    probs[:, 3] = rng.uniform(0.3, 0.7, len(probs))
    probs[rare, 3] = 0.9
    tuned = tune_thresholds(probs, truth, min_positives=10)
    assert tuned.positives[3] == 4 and tuned.per_tag[3] == tuned.global_threshold
    assert tuned.chosen == "per_tag" and not np.allclose(tuned.per_tag[:3], tuned.global_threshold)
    free = tune_thresholds(probs, truth, min_positives=1, prior_positives=1e-9)  # no guard: it overfits the 4
    assert free.per_tag[3] >= 0.69
    # a tag's move is bounded by its credibility weight n / (n + m) times the grid's reach from the global value
    weight = tuned.positives / (tuned.positives + 10)
    reach = np.maximum(0.94 - tuned.global_threshold, tuned.global_threshold - 0.05)
    assert np.all(np.abs(tuned.per_tag - tuned.global_threshold) <= weight * reach + 1e-9)


def test_thresholds_round_trip_through_json():
    rng = np.random.default_rng(4)
    probs, truth = _noisy(rng, 500, np.full(5, 0.3), rng.normal(0, 1, 5))
    tuned = tune_thresholds(probs, truth, classes=list("abcde"))
    back = Thresholds.from_dict(json.loads(json.dumps(tuned.to_dict())))
    assert back.chosen == tuned.chosen and back.classes == tuned.classes
    assert back.global_threshold == tuned.global_threshold and back.per_tag_score == tuned.per_tag_score
    assert np.array_equal(back.per_tag, tuned.per_tag) and np.array_equal(back.thresholds, tuned.thresholds)
    assert np.array_equal(back.positives, tuned.positives) and back.gain_se == tuned.gain_se > 0


def test_tuning_is_fast():
    rng = np.random.default_rng(5)
    probs, truth = _noisy(rng, 2000, np.linspace(0.01, 0.9, 17), rng.normal(0, 1, 17))
    tune_thresholds(probs[:50], truth[:50])  # warm up
    started = time.perf_counter()
    tune_thresholds(probs, truth)
    assert time.perf_counter() - started < 1.0


def test_tuned_score_is_the_score_of_the_submission_it_produces(planet):
    """The tuner mirrors to_submission (>= thresholds, the best tag always kept), so the numbers agree."""
    rng = np.random.default_rng(6)
    probs, truth = _noisy(rng, 400, np.linspace(0.02, 0.9, 17), rng.normal(0, 1, 17))
    tuned = tune_thresholds(probs, truth, metric=COUNT_METRICS[planet.metric], classes=PLANET_TAGS)
    ids = [f"train_{i}" for i in range(len(probs))]
    answers = pd.DataFrame({"image_name": ids, "tags": [" ".join(np.array(PLANET_TAGS)[row == 1]) for row in truth]})
    assert np.array_equal(label_matrix(answers["tags"], PLANET_TAGS), truth)
    table = Probabilities(ids, {"tags": probs.astype(np.float32)}, {"tags": PLANET_TAGS})
    for thresholds, expected in ((tuned.per_tag, tuned.per_tag_score), (tuned.global_threshold, tuned.global_score)):
        submission = to_submission(table, planet, thresholds=thresholds)
        assert score_submission(submission, answers, planet) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize(("name", "beta"), [("f2_samples", 2), ("f1_samples", 1)])
def test_tuning_by_metric_name_scores_like_sklearn(name, beta):
    assert name in METRICS and set(COUNT_METRICS) <= set(METRICS)
    rng = np.random.default_rng(8)
    probs, truth = _noisy(rng, 300, np.linspace(0.05, 0.8, 6), rng.normal(0, 1, 6))
    tuned = tune_for_metric(name, probs, truth)
    predicted = probs >= tuned.thresholds
    predicted[np.arange(len(probs)), probs.argmax(axis=1)] = True  # as to_submission keeps the best tag
    assert tuned.score == pytest.approx(fbeta_score(truth, predicted, beta=beta, average="samples", zero_division=0))
    with pytest.raises(ValueError, match="No threshold tuning for metric 'accuracy'"):
        tune_for_metric("accuracy", probs, truth)


def test_label_matrix_rejects_unknown_tags():
    with pytest.raises(ValueError, match="'jungle'"):
        label_matrix(["clear primary", "clear jungle"], PLANET_TAGS)


# --- submission checks: each failure names its problem and its line -------------------------------------------


def _perturb(frame: pd.DataFrame, row: int, column: str, value: str) -> pd.DataFrame:
    frame = frame.copy()
    frame.loc[row, column] = value
    return frame


def _scale_row(frame: pd.DataFrame, row: int, factor: float) -> pd.DataFrame:
    frame = frame.copy()
    values = [c for c in frame.columns if c != "id"]
    frame.loc[row, values] = [f"{float(v) * factor:.8f}" for v in frame.loc[row, values]]
    return frame


def _negative(frame: pd.DataFrame, row: int) -> pd.DataFrame:
    """One probability made negative, another raised to keep the row's sum at 1."""
    frame = frame.copy()
    first, second = [c for c in frame.columns if c != "id"][:2]
    moved = float(frame.loc[row, first]) + 0.1
    frame.loc[row, first] = "-0.1"
    frame.loc[row, second] = f"{float(frame.loc[row, second]) + moved:.12f}"
    return frame


DOGS_BREAKAGES = {
    "missing breed column": (lambda f: f.drop(columns="pug"), r"missing column\(s\): 'pug' in the header \(line 1\)"),
    "extra breed column": (lambda f: f.assign(dingo="0"), r"unexpected column\(s\): 'dingo' in the header \(line 1\)"),
    "non-numeric probability": (lambda f: _perturb(f, 2, "pug", "0.1x"), r"non-numeric probability at line 4 \(id \w+\)"),
    "NaN probability": (lambda f: _perturb(f, 4, "pug", "NaN"), r"empty or NaN 'pug' at line 6 \(id \w+\)"),
    "empty probability": (lambda f: _perturb(f, 4, "pug", ""), r"empty or NaN 'pug' at line 6 \(id \w+\)"),
    "duplicate id": (lambda f: _perturb(f, 7, "id", f["id"].iloc[1]), r"duplicate id\(s\) at line 9 \(id \w+\)"),
    "missing id": (
        lambda f: f.drop(index=5),
        r"1 id\(s\) of the sample submission are missing, e.g. \w+ \(sample submission line 7\)",
    ),
}  # fmt: skip

# Kaggle's multi-class log loss clips each value to [1e-15, 1 - 1e-15] and divides each row by its sum, and matches
# columns by name: files like these are scored, so the check warns (with the line) and does not refuse them.
DOGS_TOLERATED = {
    "columns out of order": (
        lambda f: f[["id", "beagle", "bluetick", "black-and-tan_coonhound", *f.columns[4:]]],
        r"columns out of order: column 3 is 'bluetick'.*'black-and-tan_coonhound'.*line 1",
    ),
    "row not summing to 1": (lambda f: _scale_row(f, 2, 1.1), r"do not sum to 1 .*at line 4 \(id \w+\).*sums to 1\.1"),
    "negative probability": (lambda f: _negative(f, 3), r"probability outside \[0, 1\] at line 5 \(id \w+\)"),
}  # fmt: skip


@pytest.fixture(scope="module")
def dogs_valid(dogs, dogs_sample) -> pd.DataFrame:
    sample = _read(dogs_sample.data_dir / "sample_submission.csv")
    breeds = [c for c in sample.columns if c != "id"]
    frame = to_submission(_dogs_probs(sample["id"].tolist(), breeds, np.random.default_rng(7)), dogs, template=sample)
    return frame.astype({b: str for b in breeds})


def test_valid_dogs_submission_passes(dogs, dogs_sample, dogs_valid, tmp_path):
    dogs_valid.to_csv(tmp_path / "good.csv", index=False)
    report = check_submission(tmp_path / "good.csv", dogs, dogs_sample.data_dir / "sample_submission.csv")
    assert report.ok and report.warnings == [], report.errors + report.warnings


@pytest.mark.parametrize("breakage", DOGS_BREAKAGES)
def test_dogs_check_names_each_problem_and_its_line(dogs, dogs_sample, dogs_valid, tmp_path, breakage):
    assert {"pug", "beagle", "bluetick", "black-and-tan_coonhound"} <= set(dogs_valid.columns)
    change, message = DOGS_BREAKAGES[breakage]
    change(dogs_valid).to_csv(tmp_path / "bad.csv", index=False)
    report = check_submission(tmp_path / "bad.csv", dogs, dogs_sample.data_dir / "sample_submission.csv")
    assert not report.ok
    assert any(re.search(message, e) for e in report.errors), report.errors


@pytest.mark.parametrize("quirk", DOGS_TOLERATED)
def test_dogs_check_warns_about_what_the_grader_scores_anyway(dogs, dogs_sample, dogs_valid, tmp_path, quirk):
    change, message = DOGS_TOLERATED[quirk]
    change(dogs_valid).to_csv(tmp_path / "odd.csv", index=False)
    report = check_submission(tmp_path / "odd.csv", dogs, dogs_sample.data_dir / "sample_submission.csv")
    assert report.ok, report.errors
    assert any(re.search(message, w) for w in report.warnings), report.warnings


def test_a_file_printed_with_four_decimals_passes_and_scores_like_the_exact_one(
    dogs, dogs_sample, dogs_valid, tmp_path
):
    """Rows of a 4-decimal file sum to 0.9999-1.0002; the grader rescales them, so the check says nothing."""
    breeds = [c for c in dogs_valid.columns if c != "id"]
    rounded = dogs_valid.astype({b: float for b in breeds}).round(4)
    assert not np.allclose(rounded[breeds].sum(axis=1), 1, rtol=0, atol=1e-6)
    rounded.to_csv(tmp_path / "rounded.csv", index=False, float_format="%.4f")
    report = check_submission(tmp_path / "rounded.csv", dogs, dogs_sample.data_dir / "sample_submission.csv")
    assert report.ok and report.warnings == [], report.errors + report.warnings
    truth = pd.DataFrame({"id": dogs_valid["id"], "breed": np.asarray(breeds)[np.arange(len(dogs_valid)) % 10]})
    exact = score_submission(dogs_valid.astype({b: float for b in breeds}), truth, dogs)
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # scikit-learn warns about rows not summing to 1 unless they are rescaled first
        assert score_submission(_read(tmp_path / "rounded.csv"), truth, dogs) == pytest.approx(exact, rel=1e-3)


def test_log_loss_rescales_rows_and_clips_as_the_grader_does():
    from kagglekit.submission.metrics import log_loss

    exact = pd.DataFrame({"a": [0.8, 0.25], "b": [0.2, 0.75]})
    assert log_loss(["a", "b"], exact / 2) == pytest.approx(log_loss(["a", "b"], exact))  # rows summing to 0.5
    assert log_loss(["a", "b"], pd.DataFrame({"a": [1.5, -0.5], "b": [0.0, 1.0]})) == pytest.approx(0, abs=1e-12)


PLANET_BREAKAGES = {
    "empty tags cell": (lambda f: _perturb(f, 3, "tags", ""), r"empty or NaN 'tags' at line 5 \(id test_3\)"),
    "duplicate id": (lambda f: _perturb(f, 4, "image_name", "test_0"), r"duplicate id\(s\) at line 6 \(id test_0\)"),
    "missing id": (
        lambda f: f.drop(index=1),
        r"1 id\(s\) of the sample submission are missing, e.g. test_1 \(sample submission line 3\)",
    ),
}  # fmt: skip


def _planet_valid(planet_sample) -> pd.DataFrame:
    sample = _read(planet_sample.data_dir / "sample_submission_v2.csv")
    return sample.assign(tags=["clear primary", "haze primary", "cloudy"] * (len(sample) // 3) + ["clear"] * (
        len(sample) % 3))  # fmt: skip


@pytest.mark.parametrize("breakage", PLANET_BREAKAGES)
def test_planet_check_names_each_problem_and_its_line(planet, planet_sample, tmp_path, breakage):
    sample = _read(planet_sample.data_dir / "sample_submission_v2.csv")
    valid = _planet_valid(planet_sample)
    valid.to_csv(tmp_path / "good.csv", index=False)
    good = check_submission(tmp_path / "good.csv", planet, sample)
    assert good.ok and good.warnings == [], good.warnings
    change, message = PLANET_BREAKAGES[breakage]
    change(valid).to_csv(tmp_path / "bad.csv", index=False)
    report = check_submission(tmp_path / "bad.csv", planet, sample)
    assert not report.ok
    assert any(re.search(message, e) for e in report.errors), report.errors


def test_planet_unknown_tags_and_one_tag_set_for_every_image_are_warnings(planet, planet_sample, tmp_path):
    sample = _read(planet_sample.data_dir / "sample_submission_v2.csv")
    _perturb(_planet_valid(planet_sample), 2, "tags", "clear jungle primary").to_csv(tmp_path / "a.csv", index=False)
    report = check_submission(tmp_path / "a.csv", planet, sample)
    assert report.ok and any(re.search(r"outside the 17 known classes \(jungle\) at line 4 \(id test_2\)", w)
                             for w in report.warnings), report.warnings  # fmt: skip
    sample.assign(tags="clear primary").to_csv(tmp_path / "same.csv", index=False)
    report = check_submission(tmp_path / "same.csv", planet, sample)
    assert report.ok and any(f"every one of the {len(sample)} rows predicts the same tag set (clear primary)" in w
                             for w in report.warnings), report.warnings  # fmt: skip
