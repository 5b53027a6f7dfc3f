"""Mistakes that used to surface after training (or as a library traceback) are one line before any training."""

from __future__ import annotations

import errno
import logging
import os
import re
import shutil
from collections import namedtuple

import pandas as pd
import pytest
from typer.testing import CliRunner

from kagglekit import get_competition
from kagglekit.cli import app
from kagglekit.errors import DataError
from kagglekit.pipeline import preflight

RECIPE = """
valid_pct = 0.2
tta = 0
[defaults]
arch = "resnet10t"
size = 32
epochs = 1
batch_size = 16
[[members]]
name = "first"
"""


@pytest.fixture
def recipe(tmp_path):
    path = tmp_path / "r.toml"
    path.write_text(RECIPE)
    return path


def _run(tmp_path, data, recipe, *extra, runs=None, submissions=None):
    """`kagglekit run paddy` in a pipe; returns (exit code, output, whether any member started training)."""
    runs = runs or tmp_path / "runs"
    args = ["run", "paddy", "--data", str(data), "--recipe", str(recipe), "--runs", str(runs),
            "--submissions", str(submissions or tmp_path / "subs"), *extra]  # fmt: skip
    result = CliRunner().invoke(app, args)
    trained = any(runs.glob("paddy/*/members")) if runs.is_dir() else False
    return result.exit_code, result.output, trained


def _error_line(output: str) -> str:
    errors = [line for line in output.splitlines() if line.startswith("error: ")]
    assert len(errors) == 1, output
    return errors[0]


@pytest.mark.parametrize("option", ["--runs", "--submissions"])
@pytest.mark.parametrize("code", [errno.EROFS, errno.EACCES])
def test_an_output_folder_that_cannot_be_written_is_refused_first(paddy_sample, recipe, tmp_path, monkeypatch, option,
                                                                  code):  # fmt: skip
    blocked = tmp_path / "mounted"
    real = preflight.tempfile.TemporaryFile

    def temporary_file(dir=None, **kwargs):  # what a read-only mount or a folder of another user answers
        if dir is not None and str(dir).startswith(str(blocked)):
            raise OSError(code, os.strerror(code))
        return real(dir=dir, **kwargs)

    monkeypatch.setattr(preflight.tempfile, "TemporaryFile", temporary_file)
    folders = {"runs": blocked if option == "--runs" else None, "submissions": blocked if option != "--runs" else None}
    status, output, trained = _run(tmp_path, paddy_sample.data_dir, recipe, **folders)
    why = "read-only file system" if code == errno.EROFS else "permission denied"
    assert status == 2 and not trained
    assert _error_line(output) == (f"error: {option} {blocked}: cannot write there ({why}). Choose a writable folder "
                                   f"with {option}.")  # fmt: skip


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder: the case above covers root")
def test_a_read_only_folder_for_real(paddy_sample, recipe, tmp_path):
    blocked = tmp_path / "read-only"
    blocked.mkdir()
    blocked.chmod(0o555)
    try:
        status, output, _ = _run(tmp_path, paddy_sample.data_dir, recipe, runs=blocked)
    finally:
        blocked.chmod(0o755)
    assert status == 2 and "cannot write there (permission denied)" in _error_line(output)


def test_a_file_where_the_runs_folder_should_be(paddy_sample, recipe, tmp_path):
    (tmp_path / "runs").write_text("not a folder")
    status, output, _ = _run(tmp_path, paddy_sample.data_dir, recipe)
    assert status == 2 and "--runs" in output and "cannot write there (a file is in the way)" in _error_line(output)


def test_a_full_disk_is_refused_first_and_a_nearly_full_one_warned(paddy_sample, recipe, tmp_path, monkeypatch,
                                                                   caplog):  # fmt: skip
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda _: usage(10**12, 10**12, 1024 * 2**20))
    with caplog.at_level(logging.WARNING):
        preflight.check_outputs(get_competition("paddy"), {"--runs": tmp_path / "runs"}, "n")
    assert "only 1024 MB free; a long run may fill the disk (it resumes once space is freed)" in caplog.text
    monkeypatch.setattr(preflight.shutil, "disk_usage", lambda _: usage(10**12, 10**12, 10 * 2**20))
    status, output, trained = _run(tmp_path, paddy_sample.data_dir, recipe)
    assert status == 2 and not trained
    assert "only 10 MB free on its disk, too little for one checkpoint" in _error_line(output)


@pytest.mark.parametrize(
    "error",
    [
        OSError(errno.ENOSPC, "No space left on device"),
        RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 576 vs 534"),  # torch.save
        RuntimeError("Error while serializing: I/O error: No space left on device (os error 28)"),  # safetensors
    ],
)
def test_a_disk_that_fills_up_during_the_run_says_the_run_resumes(tmp_path, error):
    full = pytest.raises(DataError, match=r"The disk filled up.*run the same command again: it resumes")
    with full, preflight.explain_full_disk([tmp_path]):
        raise error
    with pytest.raises(ValueError), preflight.explain_full_disk([tmp_path]):
        raise ValueError("anything else passes through")


def test_a_full_disk_in_the_middle_of_a_run_is_one_line_and_the_rerun_resumes(paddy_sample, recipe, tmp_path,
                                                                              monkeypatch):  # fmt: skip
    from kagglekit.pipeline import job

    def fill_up(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "runs" / "checkpoint.pth"))

    monkeypatch.setattr(job, "fit_members", fill_up)
    status, output, _ = _run(tmp_path, paddy_sample.data_dir, recipe)
    assert status == 2 and "it resumes after the last finished epoch" in _error_line(output)
    (first,) = [p.parent for p in (tmp_path / "runs" / "paddy").glob("*/run.json")]
    monkeypatch.undo()
    monkeypatch.setattr(job, "fit_members", lambda recipe, data, folder, record: (_ for _ in ()).throw(
        DataError(f"resumed {folder}")))  # fmt: skip
    status, output, _ = _run(tmp_path, paddy_sample.data_dir, recipe)
    assert _error_line(output) == f"error: resumed {first}"


def test_a_header_only_sample_submission_with_no_test_images_stops_before_training(paddy_sample, recipe, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(paddy_sample.data_dir, data)
    shutil.rmtree(data / "test_images")
    (data / "test_images").mkdir()
    (data / "sample_submission.csv").write_text("image_id,label\n")
    status, output, trained = _run(tmp_path, data, recipe)
    assert status == 2 and not trained
    assert _error_line(output) == (f"error: {data / 'sample_submission.csv'}: a header but no test ids to predict. "
                                   "Is the download complete? Download it again.")  # fmt: skip


BAD_MEMBERS = {
    "batch larger than the training rows": (
        'name = "big"\nbatch_size = 128',
        r"member 'big': batch_size 128 is larger than its \d+ training rows \(\d+ usable rows, valid_pct 0.2\)",
    ),
    "batch larger than a fold's training rows": (
        'name = "folds"\nfolds = 5\nbatch_size = 80',
        r"member 'folds': batch_size 80 is larger than its \d+ training rows \(\d+ usable rows, 5 folds\)",
    ),
    "unknown architecture": ('name = "typo"\narch = "resnet1O"', r"member 'typo': timm has no architecture 'resnet1O'"),
    "unknown task": ('name = "tasks"\ntasks = { label = 1.0, colour = 0.5 }', r"member 'tasks': unknown task\(s\) colour"),
    "missing weights": ('name = "w"\npretrained = "/nowhere/weights.safetensors"', r"weights /nowhere/.* do not exist"),
}  # fmt: skip


@pytest.mark.parametrize("case", BAD_MEMBERS)
def test_a_later_member_that_cannot_train_is_refused_before_the_first_trains(paddy_sample, tmp_path, case):
    member, message = BAD_MEMBERS[case]
    path = tmp_path / "r.toml"
    path.write_text(RECIPE + f"[[members]]\n{member}\n")
    status, output, trained = _run(tmp_path, paddy_sample.data_dir, path)
    assert status == 2 and not trained, output
    assert re.search(message, _error_line(output)), output


def test_answers_are_checked_before_training(paddy_sample, recipe, tmp_path):
    status, output, _ = _run(tmp_path, paddy_sample.data_dir, recipe, "--answers", str(tmp_path / "none.csv"))
    assert status == 2 and "--answers" in _error_line(output) and "no such file" in output
    wrong = tmp_path / "wrong.csv"
    pd.DataFrame({"image_id": ["999.jpg"], "label": ["blast"]}).to_csv(wrong, index=False)
    status, output, trained = _run(tmp_path, paddy_sample.data_dir, recipe, "--answers", str(wrong))
    assert status == 2 and not trained
    assert "1 id(s) are not in sample_submission.csv, e.g. 999.jpg" in _error_line(output)
    pd.DataFrame({"image_id": ["200001.jpg"]}).to_csv(wrong, index=False)
    status, output, _ = _run(tmp_path, paddy_sample.data_dir, recipe, "--answers", str(wrong))
    assert "no column label" in _error_line(output)


@pytest.mark.parametrize("name", ["a/b", "..", "/"])
def test_a_name_that_cannot_name_a_file(paddy_sample, recipe, tmp_path, name):
    status, output, _ = _run(tmp_path, paddy_sample.data_dir, recipe, "--name", name)
    assert status == 2 and f"--name {name!r}" in _error_line(output)


def test_a_sample_into_a_folder_that_cannot_be_written(tmp_path):
    (tmp_path / "taken").write_text("a file where the folder should be")
    result = CliRunner().invoke(app, ["sample", "paddy", str(tmp_path / "taken"), "--n-train", "10", "--n-test", "2"])
    assert result.exit_code == 2
    assert _error_line(result.output) == (f"error: DEST {tmp_path / 'taken'}: cannot write there (a file is in the "
                                          "way). Choose a writable folder with DEST.")  # fmt: skip
