"""The command line's contract: a user's mistake is one unwrapped line and status 2; a bug is status 1."""

from __future__ import annotations

import sys

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
        assert result.output.startswith(f"error: sample submission {given}: ")


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
