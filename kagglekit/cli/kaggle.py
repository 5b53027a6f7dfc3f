"""`kagglekit download`, `submit` and `submissions`: Kaggle's data and scores. Each imports what it needs when it
runs, so `kagglekit --help` stays quick."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from kagglekit.cli.common import console, errors, print_check, print_table
from kagglekit.defaults import DOWNLOADS
from kagglekit.errors import KaggleError


def download(
    competition: Annotated[str, typer.Argument(help="Competition name (see `kagglekit list`) or Kaggle slug.")],
    dest: Annotated[Path, typer.Option(help="Folder for the data; files go to DEST/<slug>/.")] = DOWNLOADS,
) -> None:
    """Download a competition's data from Kaggle and extract it safely (skipped when already complete)."""
    from kagglekit.kaggle.downloads import download as fetch

    folder = fetch(competition, dest, console=console)
    console.print(f"Competition files: [bold]{escape(str(folder))}[/] (use with `--data {escape(str(folder))}`)")


def _report(result, timeout: float) -> None:
    """What Kaggle said of a submission, and where it was recorded; exit status 1 when Kaggle could not score it."""
    record = result.record
    if record.status == "complete":
        console.print(f"[green]✓[/] Submission {record.ref} scored: public [bold]{record.public_score}[/]")
    elif record.status == "error":
        console.print(f"[bold red]✗[/] Kaggle could not score submission {record.ref}: "
                      f"{escape(str(record.error_description))}")  # fmt: skip
    elif result.unfollowed:
        console.print(
            f"[yellow]![/] Submission {record.ref} was made, but Kaggle could not be asked for its score "
            f"({escape(result.unfollowed)}); `kagglekit submissions {record.competition}` shows it later (do not "
            "submit it again)."
        )
    else:
        console.print(
            f"Submission {record.ref} was made and is still being scored after {timeout:.0f} s; "
            f"`kagglekit submissions {record.competition}` shows its score later (do not submit it again)."
        )
    console.print(f"Recorded in {result.sidecar}" + (f" and {result.run_record}" if result.run_record else ""))
    if record.status == "error":
        raise typer.Exit(1)


def submit(
    message: Annotated[str, typer.Option("--message", "-m", help="Description of the submission on Kaggle.")],
    file: Annotated[Path | None, typer.Argument(help="The submission CSV (not with --kernel).")] = None,
    competition: Annotated[
        str | None,
        typer.Option(help="Competition name (default: from submissions/<competition>/FILE, or the notebook's)."),
    ] = None,
    kernel: Annotated[
        str | None,
        typer.Option(help="Code competition: submit this notebook's output (OWNER/SLUG), as Kaggle reruns it."),
    ] = None,
    version: Annotated[int | None, typer.Option(help="With --kernel: the notebook version (default: current).")] = None,
    force: Annotated[bool, typer.Option("--force", help="Submit even if the submission checks fail.")] = False,
    data: Annotated[
        Path | None, typer.Option(help="Folder with the competition's files, for its sample submission.")
    ] = None,
    runs: Annotated[
        Path | None, typer.Option(help="Where to look for the run that made FILE when FILE does not name it.")
    ] = None,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for Kaggle's score.")] = 600.0,
    poll_interval: Annotated[float, typer.Option(help="Seconds between checks of the score.")] = 10.0,
) -> None:
    """Check a submission file and submit it, or submit a code competition's notebook; wait for the score."""
    from kagglekit.kaggle.submissions import SubmissionRefused, submit_kernel
    from kagglekit.kaggle.submissions import submit as send

    if (file is None) == (kernel is None):
        raise KaggleError("Give either a submission FILE or --kernel OWNER/SLUG (a code competition's notebook).")
    if kernel is not None:
        _report(submit_kernel(kernel, message, competition, version, timeout=timeout, poll_interval=poll_interval,
                              console=console), timeout)  # fmt: skip
        return
    try:
        result = send(file, competition, message, force, data=data, runs=runs, timeout=timeout,
                      poll_interval=poll_interval, console=console)  # fmt: skip
    except SubmissionRefused as error:
        print_check(error.report)
        errors.print("[bold red]error:[/] not submitted. Fix the file, or pass --force to submit anyway.")
        raise typer.Exit(2) from None
    if result.check.errors:
        console.print("[yellow]![/] submitted although the checks below failed (--force)")
    print_check(result.check)
    _report(result, timeout)


def submissions(
    competition: Annotated[str, typer.Argument(help="Competition name (see `kagglekit list`).")],
    folder: Annotated[
        Path | None, typer.Option("--submissions", help="Folder of submission files (default: submissions).")
    ] = None,
    runs: Annotated[Path | None, typer.Option(help="Where to look for runs of files that do not name theirs.")] = None,
) -> None:
    """List local submission files with their run, Kaggle status and scores (refreshed from Kaggle)."""
    from kagglekit.kaggle.submissions import list_submissions as listed

    table = Table("file", "run", "status", "public", "private", "message / Kaggle's error")
    table.columns[0].overflow = table.columns[1].overflow = "fold"
    for row in listed(competition, folder, runs):
        run = row.run.name if row.run else ""
        k = row.kaggle
        if k is None:
            table.add_row(escape(row.file.name), escape(run), "not submitted", "", "", "")
            continue
        note = k.error_description if k.status == "error" and k.error_description else k.message
        table.add_row(escape(row.file.name), escape(run), k.status, k.public_score or "", k.private_score or "",
                      escape(note or ""))  # fmt: skip
    print_table(table)
