"""Paddy-format (label) submissions: building, writing without loss, checking every failure mode, comparing."""

import re

import numpy as np
import pandas as pd
import pytest

from kagglekit.ensemble import Probabilities
from kagglekit.errors import SubmissionError
from kagglekit.submission import score_submission, to_submission, write_submission
from kagglekit.submission.checks import check_submission

CLASSES = ["blast", "hispa", "normal"]


@pytest.fixture
def sample(tmp_path):
    frame = pd.DataFrame({"image_id": [f"{200001 + i}.jpg" for i in range(20)], "label": ""})
    path = tmp_path / "sample_submission.csv"
    frame.to_csv(path, index=False)
    return path


def _valid(sample, tmp_path, name="good.csv", labels=None) -> pd.DataFrame:
    frame = pd.read_csv(sample, dtype=str, keep_default_na=False)
    frame["label"] = labels if labels is not None else [CLASSES[i % 3] for i in range(len(frame))]
    frame.to_csv(tmp_path / name, index=False)
    return frame


def _check(paddy, path, sample, **kwargs):
    return check_submission(path, paddy, sample, classes=CLASSES, **kwargs)


def test_a_valid_file_passes(paddy, sample, tmp_path):
    _valid(sample, tmp_path)
    report = _check(paddy, tmp_path / "good.csv", sample)
    assert report.ok and report.errors == [] and report.warnings == []


BREAKAGES = {
    "missing column": (lambda f: f.drop(columns="label"), r"missing column\(s\): label"),
    "extra column": (lambda f: f.assign(score=1), r"unexpected column\(s\): score"),
    "columns out of order": (lambda f: f[["label", "image_id"]], r"columns out of order: column 1 is 'label'"),
    "missing row": (lambda f: f.iloc[:-1], r"19 rows, the sample submission has 20"),
    "missing id": (lambda f: f.iloc[:-1], r"1 id\(s\) of the sample submission are missing, e.g. 200020.jpg"),
    "unknown id": (lambda f: f.replace({"image_id": {"200003.jpg": "999.jpg"}}), r"not in the sample.*line 4 \(id 999.jpg\)"),
    "duplicate id": (lambda f: f.replace({"image_id": {"200003.jpg": "200002.jpg"}}), r"duplicate id\(s\) at line 4"),
    "empty cell": (lambda f: f.replace({"label": {"hispa": ""}}), r"empty or NaN 'label' at line 3 \(id 200002.jpg\)"),
    "NaN cell": (lambda f: f.assign(label=["NaN", *f["label"].tolist()[1:]]), r"empty or NaN 'label' at line 2 "),
    "unknown label": (lambda f: f.replace({"label": {"hispa": "Hispa"}}), r"outside the 3 known classes \(Hispa\) at line 3"),
    "no rows": (lambda f: f.iloc[:0], r"header but no rows"),
}  # fmt: skip


@pytest.mark.parametrize("breakage", BREAKAGES)
def test_each_failure_mode_is_named_with_its_line(paddy, sample, tmp_path, breakage):
    change, message = BREAKAGES[breakage]
    change(_valid(sample, tmp_path)).to_csv(tmp_path / "bad.csv", index=False)
    report = _check(paddy, tmp_path / "bad.csv", sample)
    assert not report.ok
    assert any(re.search(message, e) for e in report.errors), report.errors


def test_reordered_rows_warn_but_pass(paddy, sample, tmp_path):
    _valid(sample, tmp_path).iloc[::-1].to_csv(tmp_path / "reversed.csv", index=False)
    report = _check(paddy, tmp_path / "reversed.csv", sample)
    assert report.ok
    assert any("different order" in w and "line 2" in w for w in report.warnings)


def test_unreadable_file_is_an_error_not_a_traceback(paddy, sample, tmp_path):
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00garbage\x00")
    assert not _check(paddy, tmp_path / "binary.csv", sample).ok


def test_comparison_with_prior_submissions(paddy, sample, tmp_path):
    base = _valid(sample, tmp_path, "prior.csv")
    same = _valid(sample, tmp_path, "same.csv", labels=base["label"].tolist())
    report = _check(paddy, tmp_path / "same.csv", sample, against=[tmp_path / "prior.csv"])
    (comparison,) = report.comparisons
    assert comparison.agreement == 1.0 and comparison.shift == 0.0 and comparison.common == 20
    assert report.warnings == []

    shuffled = same["label"].sample(frac=1, random_state=3).tolist()  # same distribution, shuffled ids
    _valid(sample, tmp_path, "shuffled.csv", labels=shuffled)
    report = _check(paddy, tmp_path / "shuffled.csv", sample, against=[tmp_path / "prior.csv"])
    assert report.ok and report.comparisons[0].shift == pytest.approx(0.0)
    assert report.comparisons[0].agreement < 0.9
    assert any("agree with prior.csv" in w for w in report.warnings)

    _valid(sample, tmp_path, "collapsed.csv", labels=["normal"] * 20)
    report = _check(paddy, tmp_path / "collapsed.csv", sample, against=[tmp_path / "prior.csv"])
    assert report.comparisons[0].shift == pytest.approx(1 - 6 / 20)  # 6 of 20 were already normal
    assert report.comparisons[0].largest_changes[0][0] == "normal"


def test_to_submission_follows_the_sample_and_refuses_missing_ids(paddy, sample):
    template = pd.read_csv(sample, dtype=str, keep_default_na=False)
    ids = template["image_id"].tolist()[::-1]
    rng = np.random.default_rng(0)
    probs = Probabilities(
        ids,
        {"label": rng.dirichlet(np.ones(10), len(ids)).astype(np.float32)},
        {"label": sorted(paddy.tasks["label"].classes)},
    )
    frame = to_submission(probs, paddy, template=template)
    assert frame["image_id"].tolist() == template["image_id"].tolist()
    expected = np.asarray(probs.vocab["label"])[probs.tasks["label"].argmax(1)][::-1]
    assert frame["label"].tolist() == expected.tolist()
    with pytest.raises(SubmissionError, match="No predictions for 1 id"):
        to_submission(probs.subset(ids[1:]), paddy, template=template)


def test_write_submission_never_overwrites_and_leaves_no_temp_files(paddy, tmp_path):
    frame = pd.DataFrame({"image_id": ["1.jpg"], "label": ["blast"]})
    first = write_submission(frame, paddy, "same-name", tmp_path)
    second = write_submission(frame.assign(label="hispa"), paddy, "same-name", tmp_path)
    assert first != second and first.parent == second.parent == tmp_path / "paddy"
    assert pd.read_csv(first)["label"].tolist() == ["blast"]
    assert pd.read_csv(second)["label"].tolist() == ["hispa"]
    assert sorted(p.name for p in (tmp_path / "paddy").iterdir()) == sorted([first.name, second.name])


def test_score_against_answers(paddy):
    answers = pd.DataFrame({"image_id": ["a", "b", "c", "d"], "label": ["blast", "hispa", "blast", "normal"]})
    sub = pd.DataFrame({"image_id": ["d", "c", "b", "a"], "label": ["normal", "hispa", "hispa", "blast"]})
    assert score_submission(sub, answers, paddy) == 0.75
    with pytest.raises(SubmissionError, match="lacks 1 answered id"):
        score_submission(sub.iloc[1:], answers, paddy)
