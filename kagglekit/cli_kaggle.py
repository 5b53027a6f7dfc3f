"""The `download`, `submit` and `submissions` commands, registered on the `kagglekit` app by kagglekit.cli."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table

from kagglekit import kaggle_api
from kagglekit.cli_common import USER_ERRORS, console, fail


def download(
    competition: Annotated[str, typer.Argument(help="Competition name (see `kagglekit list`) or Kaggle slug.")],
    dest: Annotated[
        Path, typer.Option(help="Folder for the data; files go to DEST/<slug>/.")
    ] = kaggle_api.DEFAULT_DEST,
) -> None:
    """Download a competition's data from Kaggle and extract it safely (skipped when already complete)."""
    try:
        folder = kaggle_api.download(competition, dest, console=console)
    except USER_ERRORS as error:
        fail(error)
    console.print(f"Competition files: [bold]{folder}[/] (use with `--data {folder}`)")


def submit(
    file: Annotated[Path, typer.Argument(help="The submission CSV.")],
    message: Annotated[str, typer.Option("--message", "-m", help="Description of the submission on Kaggle.")],
    competition: Annotated[
        str | None, typer.Option(help="Competition name; by default the folder of submissions/<competition>/FILE.")
    ] = None,
    force: Annotated[bool, typer.Option("--force", help="Submit even if the submission checks fail.")] = False,
    data: Annotated[
        Path | None, typer.Option(help="Folder with the competition's files, for its sample submission.")
    ] = None,
    runs: Annotated[Path, typer.Option(help="Folder of run records; the run that made FILE gets the score.")] = Path(
        "runs"
    ),
    timeout: Annotated[float, typer.Option(help="Seconds to wait for Kaggle's score.")] = 600.0,
    poll_interval: Annotated[float, typer.Option(help="Seconds between checks of the score.")] = 10.0,
) -> None:
    """Check a submission file, submit it to Kaggle, and wait for its score."""
    try:
        result = kaggle_api.submit(
            file, competition, message, force, data=data, runs_dir=runs, timeout=timeout,
            poll_interval=poll_interval, console=console,
        )  # fmt: skip
    except kaggle_api.SubmissionRefused as error:
        for problem in error.report.errors:
            console.print(f"[bold red]✗[/] {file.name}: {problem}")
        console.print("[bold red]error:[/] not submitted. Fix the file, or pass --force to submit anyway.")
        raise typer.Exit(2) from None
    except USER_ERRORS as error:
        fail(error)
    for problem in result.check.errors:
        console.print(f"[bold red]✗[/] {file.name}: {problem} (submitted anyway: --force)")
    for warning in result.check.warnings:
        console.print(f"[yellow]![/] {file.name}: {warning}")
    record = result.record
    if record.status == "complete":
        console.print(f"[green]✓[/] Submission {record.ref} scored: public [bold]{record.public_score}[/]")
    elif record.status == "error":
        console.print(f"[bold red]✗[/] Kaggle could not score submission {record.ref}: {record.error_description}")
    else:
        console.print(
            f"Submission {record.ref} is still being scored after {timeout:.0f} s; "
            f"`kagglekit submissions {record.competition}` shows its score later."
        )
    console.print(f"Recorded in {result.sidecar}" + (f" and {result.run_record}" if result.run_record else ""))
    if record.status == "error":
        raise typer.Exit(1)


def submissions(
    competition: Annotated[str, typer.Argument(help="Competition name (see `kagglekit list`).")],
    folder: Annotated[Path, typer.Option("--submissions", help="Folder of submission files.")] = Path("submissions"),
    runs: Annotated[Path, typer.Option(help="Folder of run records.")] = Path("runs"),
) -> None:
    """List local submission files with their run, Kaggle status and scores (refreshed from Kaggle)."""
    try:
        rows = kaggle_api.submissions(competition, folder, runs)
    except USER_ERRORS as error:
        fail(error)
    table = Table("file", "run", "status", "public", "private", "message / Kaggle's error")
    for row in rows:
        run = row.run.name if row.run else ""
        k = row.kaggle
        if k is None:
            table.add_row(row.file.name, run, "not submitted", "", "", "")
            continue
        note = k.error_description if k.status == "error" and k.error_description else k.message
        table.add_row(row.file.name, run, k.status, k.public_score or "", k.private_score or "", note)
    console.print(table)
