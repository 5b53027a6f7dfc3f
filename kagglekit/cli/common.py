"""What every kagglekit command shares: one console, one way to show errors and checks, and the rule that a
`KagglekitError` is the user's to fix (one line, exit status 2) while anything else is a bug (exit status 1)."""

from __future__ import annotations

import os
import sys
from typing import TYPE_CHECKING, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table
from typer.core import TyperGroup

from kagglekit.errors import KagglekitError

if TYPE_CHECKING:
    from kagglekit.submission.checks import CheckReport

# Messages are never wrapped (one greppable line in a log); tables fit a terminal's width.
console = Console(soft_wrap=True)
errors = Console(soft_wrap=True, stderr=True)  # `error:` and `bug:` lines: seen even when stdout goes to a file
PIPE_WIDTH = 200  # tables in a pipe or a log, where no width is known: wide enough that no name is cut
UNWRAPPED = sys.maxsize  # `--help` in a pipe or a log: no line is ever wrapped


def _width_known() -> bool:
    """A terminal, or COLUMNS set: lay output out at that width. A pipe or a log has no width."""
    return console.is_terminal or "COLUMNS" in os.environ


def fit_output() -> None:
    """Size the console for this invocation: a terminal's width, COLUMNS if set, else `PIPE_WIDTH`."""
    console.width = None if _width_known() else PIPE_WIDTH


def print_table(table: Table) -> None:
    """A table at the console's width; in a pipe or a log as wide as its longest row needs, so no name is ever cut or
    folded over two lines (one greppable line per row)."""
    if console.is_terminal:
        console.print(table)
        return
    width = console.width
    console.width = max(width, console.measure(table, options=console.options.update_width(10**6)).maximum)
    try:
        console.print(table)
    finally:
        console.width = width


def fail(error: KagglekitError | str) -> NoReturn:
    """Print `error: <message>` on one line (on stderr) and exit with status 2."""
    errors.print(f"[bold red]error:[/] {escape(str(error))}")
    raise typer.Exit(2)


class Commands(TyperGroup):
    """Runs a command; a `KagglekitError` it raises is printed as one line (exit 2), never as a traceback.

    The top-level context sizes this invocation's output before `--help` or a usage error can print. Help is click's
    formatter (the app sets `rich_markup_mode=None`): a terminal's full width (or COLUMNS) instead of click's 80
    columns, and in a pipe or a log no wrapping at all, so each option, command and paragraph is one line.
    Sub-commands inherit the sizes.
    """

    def make_context(self, info_name, args, parent=None, **extra):
        if parent is None:
            fit_output()
            extra = {"terminal_width": None if _width_known() else UNWRAPPED, "max_content_width": UNWRAPPED, **extra}
        return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx):
        try:
            return super().invoke(ctx)
        except KagglekitError as error:
            fail(error)
        except Exception as error:
            exits = type(error).__module__.split(".")[0] in ("typer", "click")  # exits and usage errors, any version
            if exits or ctx.parent is not None:  # a sub-command group: the top-level group reports it
                raise
            errors.print(f"[bold red]bug:[/] kagglekit failed with {type(error).__name__}: {escape(str(error))}. "
                          "This is a bug in kagglekit; please report it with the traceback below.")  # fmt: skip
            raise


def print_check(report: CheckReport) -> None:
    for error in report.errors:
        console.print(f"[bold red]✗[/] {escape(report.path.name)}: {escape(error)}")
    for warning in report.warnings:
        console.print(f"[yellow]![/] {escape(report.path.name)}: {escape(warning)}")
    if report.comparisons:
        table = Table("compared with", "common ids", "agreement", "class shift (TV)", "largest changes")
        for c in report.comparisons:
            changes = ", ".join(f"{cls} {old:.0%}→{new:.0%}" for cls, old, new in c.largest_changes)
            agreement = "-" if c.agreement is None else f"{c.agreement:.1%}"
            shift = "-" if c.shift is None else f"{c.shift:.3f}"
            table.add_row(escape(c.prior.name), str(c.common), agreement, shift, changes)
        print_table(table)
    for prior, reason in report.not_compared:
        console.print(f"[dim]not compared with {escape(prior.name)}: {escape(reason)}[/]")
    if report.ok:
        warned = f" with {len(report.warnings)} warning(s) above" if report.warnings else ""
        console.print(f"[green]✓[/] {escape(report.path.name)} passed the submission checks{warned}")
