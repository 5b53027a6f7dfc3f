"""What every kagglekit command shares: one console, which errors are the user's to fix, and how they show."""

from __future__ import annotations

from typing import NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from kagglekit.checks import CheckReport
from kagglekit.items import DataError
from kagglekit.kaggle_auth import KaggleError
from kagglekit.recipe import RecipeError
from kagglekit.submission import SubmissionError

console = Console(soft_wrap=True)  # messages stay on one line (greppable in logs); tables still fit the width

# Errors whose message tells the user what to fix: shown as one line, never as a traceback.
USER_ERRORS = (DataError, RecipeError, SubmissionError, KaggleError, FileNotFoundError, KeyError)


def fail(error: Exception) -> NoReturn:
    message = error.args[0] if isinstance(error, KeyError) and error.args else str(error)
    console.print(f"[bold red]error:[/] {escape(str(message))}")
    raise typer.Exit(2)


def print_check(report: CheckReport) -> None:
    for error in report.errors:
        console.print(f"[bold red]✗[/] {report.path.name}: {escape(error)}")
    for warning in report.warnings:
        console.print(f"[yellow]![/] {report.path.name}: {escape(warning)}")
    if report.comparisons:
        table = Table("compared with", "common ids", "agreement", "class shift (TV)", "largest changes")
        for c in report.comparisons:
            changes = ", ".join(f"{cls} {old:.0%}→{new:.0%}" for cls, old, new in c.largest_changes)
            agreement = "-" if c.agreement is None else f"{c.agreement:.1%}"
            shift = "-" if c.shift is None else f"{c.shift:.3f}"
            table.add_row(c.prior.name, str(c.common), agreement, shift, changes)
        console.print(table)
    if report.ok:
        console.print(f"[green]✓[/] {report.path.name} passed the submission checks")
