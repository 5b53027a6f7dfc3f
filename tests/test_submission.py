"""Paddy-format (label) submissions: building, writing without loss, checking every failure mode, comparing."""

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from kagglekit.ensemble import Probabilities
from kagglekit.errors import SubmissionError
from kagglekit.submission import compare_submissions, score_submission, to_submission, write_submission
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
    "missing column": (lambda f: f.drop(columns="label"), r"missing column\(s\): 'label'"),
    "extra column": (lambda f: f.assign(score=1), r"unexpected column\(s\): 'score'"),
    "missing row": (lambda f: f.iloc[:-1], r"19 rows, the sample submission has 20"),
    "missing id": (lambda f: f.iloc[:-1], r"1 id\(s\) of the sample submission are missing, e.g. 200020.jpg"),
    "unknown id": (lambda f: f.replace({"image_id": {"200003.jpg": "999.jpg"}}), r"not in the sample.*line 4 \(id 999.jpg\)"),
    "duplicate id": (lambda f: f.replace({"image_id": {"200003.jpg": "200002.jpg"}}), r"duplicate id\(s\) at line 4"),
    "empty cell": (lambda f: f.replace({"label": {"hispa": ""}}), r"empty or NaN 'label' at line 3 \(id 200002.jpg\)"),
    "NaN cell": (lambda f: f.assign(label=["NaN", *f["label"].tolist()[1:]]), r"empty or NaN 'label' at line 2 "),
    "non-numeric-looking empty": (lambda f: f.assign(label=["None", *f["label"].tolist()[1:]]), r"empty or NaN 'label' at line 2 "),
    "no rows": (lambda f: f.iloc[:0], r"header but no rows"),
}  # fmt: skip


# What Kaggle's grader scores anyway is a warning, never an error: columns are matched by name, an unknown or padded
# label is scored as a wrong answer.
TOLERATED = {
    "columns out of order": (lambda f: f[["label", "image_id"]], r"columns out of order: column 1 is 'label'"),
    "unknown label": (lambda f: f.replace({"label": {"hispa": "Hispa"}}), r"outside the 3 known classes \(Hispa\) at line 3.*scores them as wrong"),
    "padded label": (lambda f: f.replace({"label": {"hispa": " hispa"}}), r"spaces around 'label' at line 3 \(id 200002.jpg\)"),
}  # fmt: skip


@pytest.mark.parametrize("case", [*BREAKAGES, *TOLERATED])
def test_each_problem_is_named_with_its_line_an_error_only_if_the_grader_rejects_it(paddy, sample, tmp_path, case):
    change, message = BREAKAGES.get(case) or TOLERATED[case]
    change(_valid(sample, tmp_path)).to_csv(tmp_path / "bad.csv", index=False)
    report = _check(paddy, tmp_path / "bad.csv", sample)
    assert report.ok == (case in TOLERATED), report.errors
    found = report.warnings if case in TOLERATED else report.errors
    assert any(re.search(message, line) for line in found), found


def test_every_row_predicting_the_same_class_is_a_warning(paddy, sample, tmp_path):
    _valid(sample, tmp_path, "collapsed.csv", labels=["normal"] * 20)
    report = _check(paddy, tmp_path / "collapsed.csv", sample)
    assert report.ok
    assert any("every one of the 20 rows predicts the same class (normal)" in w for w in report.warnings)
    one_off = ["normal"] * 19 + ["blast"]
    _valid(sample, tmp_path, "nearly.csv", labels=one_off)
    assert not any("same class" in w for w in _check(paddy, tmp_path / "nearly.csv", sample).warnings)


def test_reordered_rows_warn_but_pass(paddy, sample, tmp_path):
    _valid(sample, tmp_path).iloc[::-1].to_csv(tmp_path / "reversed.csv", index=False)
    report = _check(paddy, tmp_path / "reversed.csv", sample)
    assert report.ok
    assert any("different order" in w and "line 2" in w for w in report.warnings)


def test_unreadable_file_is_an_error_not_a_traceback(paddy, sample, tmp_path):
    (tmp_path / "binary.csv").write_bytes(b"\xff\xfe\x00garbage\x00")
    assert not _check(paddy, tmp_path / "binary.csv", sample).ok


def _text(sample, tmp_path, edit) -> Path:
    """A valid file written by hand, line by line, then edited: what pandas could not write."""
    lines = [f"{row.image_id},{CLASSES[i % 3]}" for i, row in enumerate(pd.read_csv(sample, dtype=str).itertuples())]
    path = tmp_path / "hand.csv"
    path.write_text(edit(["image_id,label", *lines]))
    return path


RAW = {
    "blank lines count as lines": (lambda rows: "\n".join([*rows[:3], "", rows[3].replace("200003", "999"), *rows[4:]]),
                                   False, r"not in the sample.*line 5 \(id 999.jpg\)"),
    "a row with a cell too many": (lambda rows: "\n".join([*rows[:4], rows[4] + ",x", *rows[5:]]), False,
                                   r"wrong number of cells \(the header has 2\) at line 5$"),
    "a column named twice": (lambda rows: "\n".join(["image_id,label,label"] + [r + ",blast" for r in rows[1:]]),
                             False, r"named twice in the header \(line 1\): 'label'"),
    "a column named twice over rows of two cells": (lambda rows: "\n".join(["image_id,label,label", *rows[1:]]),
                                                    False, r"named twice in the header \(line 1\): 'label'"),
    "a blank line before the header": (lambda rows: "\n" + "\n".join(rows), True, None),
    "a byte-order mark (Excel's UTF-8)": (lambda rows: "\ufeff" + "\n".join(rows), True, None),
    "Windows line ends": (lambda rows: "\r\n".join(rows) + "\r\n", True, None),
}  # fmt: skip


@pytest.mark.parametrize("case", RAW)
def test_files_are_read_as_the_grader_reads_them_and_problems_name_the_real_line(paddy, sample, tmp_path, case):
    edit, ok, message = RAW[case]
    report = _check(paddy, _text(sample, tmp_path, edit), sample)
    assert report.ok == ok and (ok or any(re.search(message, e) for e in report.errors)), report.errors
    assert not ok or report.warnings == []


def test_a_header_only_file_is_one_error(paddy, sample, tmp_path):
    report = _check(paddy, _text(sample, tmp_path, lambda rows: rows[0] + "\n"), sample)
    assert report.errors == ["the file has a header but no rows"]


@pytest.mark.parametrize(
    "header", ["image_id,label,variety,age", "id,breed", "image_id,label\n"], ids=["train.csv", "dogs'", "no rows"]
)
def test_a_sample_submission_that_cannot_be_the_competitions_is_one_error_about_it(paddy, sample, tmp_path, header):
    """Another competition's sample, the training CSV or an empty one: the sample is wrong, not the submission."""
    _valid(sample, tmp_path)
    wrong = tmp_path / "wrong_sample.csv"
    wrong.write_text(header if header.endswith("\n") else f"{header}\n200001.jpg,{',x' * header.count(',')}\n")
    with pytest.raises(SubmissionError, match=rf"^sample submission {re.escape(str(wrong))}: .*give paddy's "):
        _check(paddy, tmp_path / "good.csv", wrong)


def test_comparison_with_prior_submissions(paddy, sample, tmp_path):
    base = _valid(sample, tmp_path, "prior.csv")
    same = _valid(sample, tmp_path, "same.csv", labels=base["label"].tolist())
    report = _check(paddy, tmp_path / "same.csv", sample, against=[tmp_path / "prior.csv"])
    (comparison,) = report.comparisons
    assert comparison.agreement == 1.0 and comparison.shift == 0.0 and comparison.common == 20
    assert report.warnings == [] and comparison.largest_changes == []  # no class moved: none to list
    assert compare_submissions(tmp_path / "same.csv", tmp_path / "prior.csv", paddy) == comparison

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


def _written(paddy, frame, folder, data: str, fingerprint: str):
    return write_submission(frame, paddy, "run", folder, test_data={"data": data, "fingerprint": fingerprint})


def test_only_files_made_for_the_same_test_images_are_compared(paddy, sample, tmp_path):
    """A --sample run then a --data run share the sample's ids (200001.jpg...) but not the images: not compared."""
    base = _valid(sample, tmp_path, "base.csv")
    shuffled = base.assign(label=base["label"].sample(frac=1, random_state=3).tolist())
    on_sample = _written(paddy, base, tmp_path / "subs", "/cache/samples/paddy", "aaaa")
    on_real = _written(paddy, shuffled, tmp_path / "subs", "/data/paddy", "bbbb")
    report = _check(paddy, on_real, sample, against=[on_sample])
    assert report.comparisons == [] and not any("agree" in w for w in report.warnings)
    assert report.not_compared == [(on_sample, "made for the test images in /cache/samples/paddy, this file for "
                                               "those in /data/paddy")]  # fmt: skip
    again = _written(paddy, shuffled, tmp_path / "subs", "/data/paddy", "bbbb")
    report = _check(paddy, again, sample, against=[on_real, on_sample])
    assert [c.prior for c in report.comparisons] == [on_real] and report.comparisons[0].agreement == 1.0
    assert [p for p, _ in report.not_compared] == [on_sample]
    assert report.to_dict()["not_compared"][0]["prior"] == str(on_sample)


def test_files_from_elsewhere_are_compared_by_their_id_set(paddy, sample, tmp_path):
    base = _valid(sample, tmp_path, "prior.csv")  # no sidecar: a file written by hand or another tool
    base.iloc[:10].to_csv(tmp_path / "partial.csv", index=False)
    base.assign(image_id=[f"9{i}.jpg" for i in range(20)]).to_csv(tmp_path / "other.csv", index=False)
    report = _check(paddy, tmp_path / "prior.csv", sample, against=[tmp_path / "partial.csv", tmp_path / "other.csv"])
    assert report.comparisons == []
    assert report.not_compared == [(tmp_path / "partial.csv", "made for other test ids"),
                                   (tmp_path / "other.csv", "made for other test ids")]  # fmt: skip
    base.rename(columns={"label": "class"}).to_csv(tmp_path / "renamed.csv", index=False)
    report = _check(paddy, tmp_path / "prior.csv", sample, against=[tmp_path / "renamed.csv"])
    assert report.not_compared == [(tmp_path / "renamed.csv", "its header has no 'label' column")]
    written = _written(paddy, base, tmp_path / "subs", "/data/paddy", "aaaa")  # one side has no fingerprint: ids
    report = _check(paddy, written, sample, against=[tmp_path / "prior.csv"])
    assert [c.prior for c in report.comparisons] == [tmp_path / "prior.csv"]


def test_compare_stops_at_the_most_recent_comparable_files(paddy, sample, tmp_path):
    for i in range(4):
        _valid(sample, tmp_path, f"p{i}.csv")
    priors = [tmp_path / f"p{i}.csv" for i in range(4)]
    report = _check(paddy, priors[0], sample, against=priors[1:], compare=2)
    assert [c.prior for c in report.comparisons] == priors[1:3]


@pytest.mark.parametrize("kind", ["missing", "folder"])
def test_an_earlier_file_that_is_not_there_is_a_one_line_error(paddy, sample, tmp_path, kind):
    _valid(sample, tmp_path)
    prior = tmp_path / "nothing.csv" if kind == "missing" else tmp_path
    with pytest.raises(SubmissionError, match=rf"earlier submission {re.escape(str(prior))}: "
                                              f"{'no such file' if kind == 'missing' else 'a folder'}"):  # fmt: skip
        _check(paddy, tmp_path / "good.csv", sample, against=[prior])


def test_files_get_the_usual_permissions(paddy, tmp_path):
    import os
    import stat

    from kagglekit._io import atomic_write, write_json

    old = os.umask(0o022)
    try:
        written = [
            write_submission(pd.DataFrame({"image_id": ["1.jpg"], "label": ["blast"]}), paddy, "n", tmp_path),
            write_json(tmp_path / "r.json", {}),
            atomic_write(tmp_path / "a.txt", lambda tmp: tmp.write_text("x")),
        ]
    finally:
        os.umask(old)
    assert {stat.S_IMODE(p.stat().st_mode) for p in written} == {0o644}, "mkstemp's 0600 must not leak"


def test_temporary_files_of_killed_writers_are_removed(paddy, tmp_path):
    import os
    import socket
    import subprocess

    from kagglekit._io import remove_abandoned

    folder = tmp_path / "paddy"
    folder.mkdir()
    dead = subprocess.Popen(["true"])
    dead.wait()  # its pid is free now, like a writer that was killed
    host = socket.gethostname()
    leftovers = [folder / f".tmp-{dead.pid}@{host}-abcd1234", folder / ".tmp-oldstyle"]
    live = [folder / f".tmp-{os.getpid()}@{host}-efgh5678", folder / f".tmp-{dead.pid}@another-host-ijkl9012"]
    for path in leftovers + live:
        path.write_text("half a file")
    os.utime(leftovers[1], (0, 0))  # written long ago by a version that did not record the pid
    write_submission(pd.DataFrame({"image_id": ["1.jpg"], "label": ["blast"]}), paddy, "n", tmp_path)
    assert not any(p.exists() for p in leftovers), "leftovers of dead writers are removed with the next write"
    assert all(p.exists() for p in live), "a live writer's (or another machine's) file is left alone"
    assert remove_abandoned(folder) == []


def test_a_run_compares_its_submission_only_with_those_for_the_same_test_images(paddy, paddy_sample, tmp_path):
    """Two samples with other seeds have the same test ids (200001.jpg...) but other images."""
    from kagglekit.pipeline import prepare_data, write_and_check
    from kagglekit.pipeline.combine import EnsembleOutput
    from kagglekit.samples import write_sample

    other = write_sample(paddy, tmp_path / "other", seed=9, n_train=30, n_test=24)
    outputs = {}
    for name, folder in [("first", paddy_sample.data_dir), ("other", other.data_dir), ("again", paddy_sample.data_dir)]:
        data = prepare_data(paddy, folder)
        ids = data.items.test["id"].tolist()
        rows = np.random.default_rng(len(outputs)).dirichlet(np.ones(10), len(ids)).astype(np.float32)
        probs = Probabilities(ids, {"label": rows}, {"label": data.vocab["label"]})
        ensemble = EnsembleOutput(paddy, probs, probs, [1.0])
        outputs[name] = write_and_check(ensemble, data, name, tmp_path / "subs")
    assert outputs["other"].check.comparisons == []
    assert outputs["other"].check.not_compared[0][1].startswith("made for the test images in")
    again = outputs["again"].check
    assert [c.prior for c in again.comparisons] == [outputs["first"].path]
    assert [p for p, _ in again.not_compared] == [outputs["other"].path]
