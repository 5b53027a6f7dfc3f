"""Output that works in a terminal, in a pipe and in a Kaggle batch log: help never folded at 80 columns, flags that
read as flags, usage errors without a box; progress bars that leave nothing behind, and print nothing in a pipe."""

from __future__ import annotations

import builtins
import fcntl
import importlib.util
import io
import os
import pty
import re
import struct
import subprocess
import sys
import termios
import types

import pyte
import pytest
import typer
from rich.console import Console
from rich.progress import BarColumn, TextColumn
from typer.testing import CliRunner

from kagglekit._output import progress, track
from kagglekit.cli import app


def _commands(group, path=()):
    """(command path, click command) for the app and every command and sub-command under it."""
    yield path, group
    for name, command in getattr(group, "commands", {}).items():
        yield from _commands(command, (*path, name))


COMMANDS = list(_commands(typer.main.get_command(app)))


@pytest.mark.parametrize("path", [path for path, _ in COMMANDS], ids=lambda path: " ".join(path) or "kagglekit")
def test_help_in_a_pipe_gives_each_option_one_line_and_flags_read_as_flags(path, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    command = dict(COMMANDS)[path]
    result = CliRunner().invoke(app, [*path, "--help"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert "<bool>" not in result.output and "╭" not in result.output
    rows = {}  # the names column of each option's line, split into names and metavars -> that line
    for line in (line for line in lines if line.lstrip().startswith("-")):
        first = re.split(r"\s{2,}", line.strip())[0]
        rows.setdefault(frozenset(first.replace(",", " ").split()), line)
    for param in command.params:
        if not isinstance(param, typer.core.TyperOption) or param.hidden or not param.help:
            continue
        (names, line), *_ = [(names, line) for names, line in rows.items() if param.opts[0] in names]
        assert " ".join(param.help.split()) in line, (line, param.help)  # the whole help, not folded
        if param.is_flag:  # `--fresh`, `-v, --verbose`, `--push / --no-push`: names only, no value to give
            assert names == {*param.opts, *param.secondary_opts, *(["/"] if param.secondary_opts else [])}, line
    if command.help:  # each paragraph of the command's own help on one line
        for paragraph in command.help.split("\n\n"):
            assert " ".join(paragraph.split()) in result.output.replace("\n  ", "\n")


def test_the_command_list_gives_each_command_its_first_sentence_on_one_line(monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    result = CliRunner().invoke(app, ["--help"])
    predict = next(line for line in result.output.splitlines() if line.lstrip().startswith("predict "))
    assert predict.endswith("or IMAGES, printing the top class per task."), predict


@pytest.mark.parametrize(
    ("arguments", "error"),
    [(["run"], "Error: Missing argument 'competition'."), (["check", "--bogus"], "Error: No such option: --bogus")],
)
def test_a_usage_error_in_a_pipe_is_a_plain_line_not_a_box(arguments, error, monkeypatch):
    monkeypatch.delenv("COLUMNS", raising=False)
    result = CliRunner().invoke(app, arguments)
    assert result.exit_code == 2
    assert error in result.output.splitlines(), result.output
    assert not set("╭│╰") & set(result.output)


def test_no_arguments_prints_the_plain_help():
    result = CliRunner().invoke(app, [])
    assert result.exit_code == 2
    assert result.output.startswith("Usage: ") and "[OPTIONS] COMMAND [ARGS]..." in result.output.splitlines()[0]
    assert "  run          Train the recipe's ensemble, write a checked submission" in result.output


def _in_a_terminal(arguments: list[str], columns: int) -> str:
    """`python -m kagglekit ARGUMENTS` with a pseudo-terminal `columns` wide as its output: what a user sees."""
    main, child = pty.openpty()
    fcntl.ioctl(child, termios.TIOCSWINSZ, struct.pack("HHHH", 40, columns, 0, 0))
    env = {key: value for key, value in os.environ.items() if key not in ("COLUMNS", "LINES")}
    process = subprocess.Popen([sys.executable, "-m", "kagglekit", *arguments], stdout=child, stderr=child, env=env)
    os.close(child)
    chunks = []
    while True:
        try:
            chunk = os.read(main, 65536)
        except OSError:  # the child closed the terminal
            break
        if not chunk:
            break
        chunks.append(chunk)
    os.close(main)
    process.wait(timeout=60)
    return b"".join(chunks).decode().replace("\r\n", "\n")


def test_help_in_a_terminal_takes_its_whole_width():
    output = _in_a_terminal(["run", "--help"], columns=100)
    lines = output.splitlines()
    assert max(map(len, lines)) <= 100 and max(map(len, lines)) > 80, output  # wrapped at 100, not at 80
    corrections = next(n for n, line in enumerate(lines) if line.lstrip().startswith("--corrections"))
    assert re.match(r" {24}\S", lines[corrections + 1])  # its long help folded to fit, under its first line
    assert re.search(r"^\s+--fresh\s{2,}Start a new run", output, re.MULTILINE)


def _steps() -> None:
    """What a run prints around its bars: a line, two bars (a finished step, then a download-style one), a line."""
    print("Plan: 2 member(s), TTA 2 on 150 test images")
    assert list(track(range(40), "resnet18 test TTA (2+1 passes)")) == list(range(40))
    with progress(TextColumn("{task.description}"), BarColumn()) as bar:
        task = bar.add_task("Downloading paddy.zip", total=3)
        for _ in range(3):
            bar.advance(task)
    print("Submission: submissions/paddy/sample.csv")


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.fixture(autouse=True)
def _fresh_rich_console(monkeypatch):
    """rich's global console (the one `track` draws on) fixes `is_interactive` when it is made: one per test."""
    monkeypatch.setattr("rich._console", None)


def test_progress_bars_in_a_terminal_leave_no_line_behind(monkeypatch):
    """Replayed through a terminal emulator, the screen holds the two lines and nothing where the bars were."""
    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE", raising=False)
    monkeypatch.setenv("COLUMNS", "70")  # the width rich lays the bars out at
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stdout", terminal)
    _steps()
    monkeypatch.undo()
    written = terminal.getvalue()
    assert "━" in written  # the bars were drawn
    screen = pyte.Screen(70, 10)
    pyte.Stream(screen).feed(written.replace("\n", "\r\n"))  # a terminal's output post-processing (onlcr)
    shown = [line.rstrip() for line in screen.display]
    assert shown[:3] == ["Plan: 2 member(s), TTA 2 on 150 test images", "Submission: submissions/paddy/sample.csv", ""]


@pytest.mark.parametrize("batch", [False, True], ids=["pipe", "Kaggle batch"])
def test_progress_bars_print_nothing_in_a_pipe_or_a_kaggle_batch_log(batch, capsys, monkeypatch):
    if batch:  # a notebook's saved version: a log, even where stdout claims to be a terminal
        monkeypatch.setenv("KAGGLE_KERNEL_RUN_TYPE", "Batch")
        monkeypatch.setattr(sys.stdout, "isatty", lambda: True)
    _steps()
    output = capsys.readouterr().out
    assert output == "Plan: 2 member(s), TTA 2 on 150 test images\nSubmission: submissions/paddy/sample.csv\n"


def test_log_lines_in_a_terminal_are_the_message_alone(monkeypatch):
    """rich's log handler draws the level itself; the line must not repeat it as `INFO:kagglekit.data.locate:`."""
    import logging

    import kagglekit.cli

    screen = io.StringIO()
    monkeypatch.setattr(kagglekit.cli, "console", Console(file=screen, force_terminal=True, width=100))
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", list(root.handlers))  # the command's logging set-up is undone afterwards
    monkeypatch.setattr(root, "level", root.level)
    kagglekit.cli.main(verbose=False)
    logging.getLogger("kagglekit.data.locate").info("Using the paddy data in /data/paddy")
    text = re.sub(r"\x1b\[[0-9;]*m", "", screen.getvalue())
    assert re.fullmatch(r"INFO +Using the paddy data in /data/paddy\s*", text), text


def test_a_process_that_imported_ipykernel_is_no_notebook_but_a_live_kernel_is(monkeypatch):
    """The test run imports ipykernel (to run notebooks); a live kernel is what rich detects as Jupyter."""
    from kagglekit._output import interactive

    monkeypatch.delenv("KAGGLE_KERNEL_RUN_TYPE", raising=False)
    monkeypatch.setitem(sys.modules, "ipykernel", types.ModuleType("ipykernel"))
    monkeypatch.setattr(sys, "stdout", io.StringIO())  # a pipe
    assert not interactive()

    class ZMQInteractiveShell:  # what IPython's kernel runs a notebook's cells in
        pass

    monkeypatch.setattr(builtins, "get_ipython", ZMQInteractiveShell, raising=False)
    monkeypatch.setattr("rich._console", None)  # rich asks when it makes its console
    for widgets in (True, False):  # without ipywidgets rich's bars in a notebook are only warnings to install it
        monkeypatch.setattr(importlib.util, "find_spec", lambda name, widgets=widgets: object() if widgets else None)
        assert interactive() == widgets


def test_a_bugs_traceback_in_a_pipe_is_pythons_own_unboxed_and_whole():
    """A bug (exit 1) in a log must be greppable: the `bug:` line, then Python's traceback, not a box folded at 80
    columns."""
    code = ("import sys\nfrom kagglekit.cli import app, local\n"
            "local.list_competitions = lambda: 1 / 0\nsys.argv = ['kagglekit', 'list']\napp()")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.returncode == 1
    assert done.stderr.startswith("bug: kagglekit failed with ZeroDivisionError: division by zero.")
    assert "Traceback (most recent call last):" in done.stderr, done.stderr
    assert done.stderr.rstrip().endswith("ZeroDivisionError: division by zero")
    assert not re.search("[╭│╰]", done.stderr)


def test_a_users_error_goes_to_stderr_so_a_redirected_output_still_shows_it(tmp_path):
    done = subprocess.run([sys.executable, "-m", "kagglekit", "check", str(tmp_path / "nothing.csv"),
                           "--competition", "paddy"], capture_output=True, text=True)  # fmt: skip
    assert (done.returncode, done.stdout, done.stderr) == (2, "", f"error: {tmp_path / 'nothing.csv'}: no such file.\n")
