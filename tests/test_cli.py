"""The command line's contract: a user's mistake is one unwrapped line and status 2; a bug is status 1."""

from __future__ import annotations

import json
import re
import shlex
import shutil
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from kagglekit.cli import app, local
from kagglekit.errors import PluginError


def test_a_user_error_is_one_line_at_any_width(tmp_path):
    deep = tmp_path / ("a-rather-long-folder-name/" * 6) / "missing-file.csv"
    result = CliRunner().invoke(app, ["check", str(deep), "--competition", "paddy"], env={"COLUMNS": "40"})
    assert result.exit_code == 2
    assert f"error: {deep}: no such file." in result.output.splitlines()
    assert result.exception is None or isinstance(result.exception, SystemExit)


def test_an_unknown_competition_names_the_known_ones():
    result = CliRunner().invoke(app, ["run", "nosuch", "--sample"])
    assert result.exit_code == 2
    assert result.output.startswith("error: Unknown competition 'nosuch'. Known: dogs, paddy")


def test_a_missing_sample_submission_is_a_one_line_error(tmp_path):
    file = tmp_path / "sub.csv"
    file.write_text("image_id,label\n1.jpg,blast\n")
    for given in (tmp_path / "nothing.csv", tmp_path):
        result = CliRunner().invoke(app, ["check", str(file), "--competition", "paddy", "--sample-submission",
                                          str(given)])  # fmt: skip
        assert result.exit_code == 2
        what = "no such file" if given.suffix else "a folder"
        assert (
            result.output
            == f"error: sample submission {given}: {what}; give the competition's sample_submission CSV.\n"
        )


def test_a_bug_is_reported_as_a_bug_with_status_1(monkeypatch):
    def broken() -> list[str]:
        raise ZeroDivisionError("division by zero")

    monkeypatch.setattr(local, "list_competitions", broken)
    result = CliRunner().invoke(app, ["list"])
    assert result.exit_code == 1
    assert isinstance(result.exception, ZeroDivisionError)
    assert "bug: kagglekit failed with ZeroDivisionError: division by zero. This is a bug in kagglekit" in result.output


def test_kagglekit_errors_are_not_mistaken_for_bugs(monkeypatch):
    def unknown() -> list[str]:
        raise PluginError("Unknown competition 'x'.")

    monkeypatch.setattr(local, "list_competitions", unknown)
    result = CliRunner().invoke(app, ["list"])
    assert (result.exit_code, result.output) == (2, "error: Unknown competition 'x'.\n")


@pytest.mark.parametrize("command", [["kaggle", "push-kernel", "nosuch", "--no-push", "--owner", "me"]])
def test_sub_commands_report_user_errors_the_same_way(command):
    result = CliRunner().invoke(app, command)
    assert result.exit_code == 2 and result.output.startswith("error: Unknown competition 'nosuch'")


def test_a_kaggle_batch_run_is_never_interactive(monkeypatch):
    from kagglekit._output import interactive

    monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    assert interactive()
    monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Batch")  # a saved version or a competition rerun: a log file
    assert not interactive()


README = Path(__file__).resolve().parents[1] / "README.md"


def _readme_check_command() -> list[str]:
    """The `kagglekit check ... --against ... --against ...` example of the README's Submission checks section."""
    section = README.read_text().split("## Submission checks", 1)[1].split("\n## ", 1)[0]
    (block,) = re.findall(r"```bash\n(.*?)```", section, re.DOTALL)
    return shlex.split(block.replace("\\\n", " "))


def test_the_readme_check_example_works_as_written(paddy_sample, tmp_path, monkeypatch):
    command = _readme_check_command()
    assert command[:2] == ["kagglekit", "check"] and command.count("--against") == 2
    monkeypatch.chdir(tmp_path)
    args = command[1:]
    sample = Path(args[args.index("--sample-submission") + 1])
    sample.parent.mkdir(parents=True)
    shutil.copy(paddy_sample.data_dir / "sample_submission.csv", sample)
    frame = pd.read_csv(sample, dtype=str, keep_default_na=False)
    priors = [Path(args[i + 1]) for i, arg in enumerate(args) if arg == "--against"]
    for n, path in enumerate([Path(args[1]), *priors]):
        path.parent.mkdir(parents=True, exist_ok=True)
        frame.assign(label=["blast", "hispa", "normal"][n % 3]).assign(label=lambda f: f["label"].where(
            f.index % 2 == 0, "tungro")).to_csv(path, index=False)  # fmt: skip
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert all(prior.name in result.output for prior in priors), result.output
    assert "passed the submission checks" in result.output


def test_check_finds_the_competition_and_sample_submission_a_file_was_written_for(
    paddy, paddy_sample, tmp_path, monkeypatch
):
    """`kagglekit check FILE` alone: the sidecar names the competition and the data folder, whose sample submission
    then catches a missing id; a file nobody wrote is checked with --competition only, and says what was not."""
    from kagglekit.submission import write_submission

    monkeypatch.chdir(tmp_path)  # no data/<slug>/ download to fall back on
    frame = pd.read_csv(paddy_sample.data_dir / "sample_submission.csv", dtype=str).assign(label="blast")
    test_data = {"data": str(paddy_sample.data_dir), "fingerprint": "aaaa"}
    file = write_submission(frame.iloc[1:], paddy, "partial", tmp_path / "subs", test_data=test_data)
    result = CliRunner().invoke(app, ["check", str(file)])
    assert result.exit_code == 1, result.output
    assert f"paddy: checking against {paddy_sample.data_dir / 'sample_submission.csv'}" in result.output
    assert f"1 id(s) of the sample submission are missing, e.g. {frame['image_id'].iloc[0]}" in result.output

    stray = tmp_path / "stray.csv"
    frame.iloc[1:].to_csv(stray, index=False)
    result = CliRunner().invoke(app, ["check", str(stray)])
    assert (result.exit_code, result.output.split(";")[0]) == (
        2,
        f"error: Cannot tell which competition {stray} is for",
    )
    result = CliRunner().invoke(app, ["check", str(stray), "--competition", "paddy"])
    assert result.exit_code == 0 and "row count and id set were not checked (pass --sample-submission)" in result.output


def test_check_of_a_folder_says_it_is_a_folder(tmp_path):
    result = CliRunner().invoke(app, ["check", str(tmp_path), "--competition", "paddy"])
    assert (result.exit_code, result.output) == (2, f"error: {tmp_path}: a folder, not a submission file.\n")


LONG_MEMBER = "convnext_small.fb_in22k_ft_in1k-crop-384-progressive-seed2-with-a-long-tail"
LONG_FILE = "20261124-101500_convnext-small-in22k-crop-384-tta8-seed2-progressive-resize.csv"


def _fake_run_result(tmp_path):
    from kagglekit import get_competition
    from kagglekit.ensemble import Probabilities
    from kagglekit.pipeline.combine import EnsembleOutput
    from kagglekit.pipeline.job import RunResult
    from kagglekit.pipeline.members import MemberOutput
    from kagglekit.pipeline.write import SubmissionOutput
    from kagglekit.submission.checks import CheckReport

    paddy = get_competition("paddy")
    probs = Probabilities(
        ["1.jpg"], {"label": np.ones((1, 10), np.float32) / 10}, {"label": list(paddy.tasks["label"].classes)}
    )
    member = MemberOutput(LONG_MEMBER, probs, probs, arch="convnext_small.fb_in22k_ft_in1k", valid_score=0.5,
                          task_scores={"label": 0.5}, train_seconds=12)  # fmt: skip
    path = tmp_path / "submissions" / "paddy" / LONG_FILE
    written = SubmissionOutput(path, CheckReport(path), pd.DataFrame())
    folder = tmp_path / "runs" / "paddy" / LONG_FILE.removesuffix(".csv")
    return RunResult(paddy, folder, [member], EnsembleOutput(paddy, probs, probs, [1.0], score=0.5), written)


def test_long_member_and_file_names_are_whole_in_a_pipe(tmp_path, monkeypatch):
    """Tables in a pipe or a log are 200 columns wide, so realistic names are never cut or folded."""
    from kagglekit.pipeline import job

    monkeypatch.setattr(job, "run", lambda *args, **kwargs: _fake_run_result(tmp_path))
    monkeypatch.delenv("COLUMNS", raising=False)
    result = CliRunner().invoke(app, ["run", "paddy", "--sample"])
    assert result.exit_code == 0, result.output
    assert any(LONG_MEMBER in line and "convnext_small.fb_in22k_ft_in1k" in line for line in result.output.splitlines())
    assert any(LONG_FILE in line for line in result.output.splitlines())

    subs, runs = tmp_path / "submissions", tmp_path / "runs"
    run_folder = runs / "paddy" / LONG_FILE.removesuffix(".csv")
    run_folder.mkdir(parents=True)
    (run_folder / "run.json").write_text("{}")
    (subs / "paddy").mkdir(parents=True)
    (subs / "paddy" / LONG_FILE).write_text("image_id,label\n1.jpg,blast\n")
    (subs / "paddy" / f"{LONG_FILE}.source.json").write_text(json.dumps({"run": str(run_folder)}))
    result = CliRunner().invoke(app, ["submissions", "paddy", "--submissions", str(subs), "--runs", str(runs)])
    assert result.exit_code == 0, result.output
    (row,) = [line for line in result.output.splitlines() if "not submitted" in line]
    assert LONG_FILE in row and LONG_FILE.removesuffix(".csv") in row.replace(LONG_FILE, "", 1), result.output


def test_version_is_the_installed_distributions():
    from importlib.metadata import version

    result = CliRunner().invoke(app, ["--version"])
    assert (result.exit_code, result.output) == (0, f"kagglekit {version('kagglekit')}\n")
