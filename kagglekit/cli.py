"""The `kagglekit` command line."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer
from rich.logging import RichHandler
from rich.markup import escape
from rich.table import Table

from kagglekit import cli_kaggle, cli_predict
from kagglekit.checks import check_submission
from kagglekit.cli_common import USER_ERRORS, console, fail, print_check
from kagglekit.cli_kaggle_kernels import kaggle_app
from kagglekit.competition import Competition
from kagglekit.distributed import is_main_process
from kagglekit.items import DataError
from kagglekit.metrics import get_metric
from kagglekit.registry import get_competition, list_competitions
from kagglekit.samples import write_sample

app = typer.Typer(help="From 'joined the competition' to a validated Kaggle submission.", no_args_is_help=True)


def _competition(name: str) -> Competition:
    try:
        return get_competition(name)
    except KeyError as error:
        raise typer.BadParameter(str(error.args[0])) from None


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logging.")] = False,
) -> None:
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(message)s",
        handlers=[RichHandler(console=console, show_path=False, show_time=False)],
    )


@app.command("list")
def list_command() -> None:
    """List the competitions kagglekit knows, with their Kaggle slug, tasks and metric."""
    competitions = [get_competition(name) for name in list_competitions()]
    table = Table("name")
    table.add_column("Kaggle slug", min_width=max(len(c.slug) for c in competitions))  # never cut: it is typed
    for column in ("tasks (* = submitted)", "metric", "submission", "recipes"):
        table.add_column(column)
    for c in competitions:
        name = c.name
        tasks = ", ".join(f"{t}{'*' if t == c.target_task else ''} ({task.kind}-label)" for t, task in c.tasks.items())
        recipes = ", ".join(sorted(p.stem for p in c.recipes_dir.glob("*.toml"))) if c.recipes_dir else ""
        table.add_row(name, c.slug, tasks, c.metric, c.submission.kind, recipes)
    console.print(table)


@app.command()
def sample(
    competition: Annotated[str, typer.Argument(help="Competition name (see `kagglekit list`).")],
    dest: Annotated[Path, typer.Argument(help="Folder to write the sample into.")],
    seed: Annotated[int, typer.Option(help="Random seed of the generator.")] = 0,
    n_train: Annotated[int, typer.Option(help="Approximate number of training images.")] = 400,
    n_test: Annotated[int, typer.Option(help="Number of test images.")] = 150,
) -> None:
    """Write a small synthetic dataset in the competition's exact file layout (answers kept beside it)."""
    data = write_sample(_competition(competition), dest, seed=seed, n_train=n_train, n_test=n_test)
    console.print(f"Competition files: {data.data_dir}\nHidden test answers: {data.answers}")


@app.command()
def run(
    competition: Annotated[str, typer.Argument(help="Competition name (see `kagglekit list`).")],
    data: Annotated[Path | None, typer.Option(help="Folder with the extracted Kaggle download.")] = None,
    sample: Annotated[bool, typer.Option("--sample", help="Use (and cache) the bundled synthetic sample.")] = False,
    recipe: Annotated[str, typer.Option(help="Recipe name of the competition, or a .toml file.")] = "sample",
    answers: Annotated[Path | None, typer.Option(help="CSV of test answers to score the submission.")] = None,
    runs: Annotated[
        Path | None,
        typer.Option(help="Folder for run records (default: runs; in a Kaggle notebook, under its working folder)."),
    ] = None,
    submissions: Annotated[
        Path | None,
        typer.Option(help="Folder for submission files (default: submissions; in a Kaggle notebook, ditto)."),
    ] = None,
    name: Annotated[str | None, typer.Option(help="Name of the run and submission (default: recipe).")] = None,
    fresh: Annotated[
        bool, typer.Option("--fresh", help="Start a new run instead of resuming an unfinished one.")
    ] = False,
) -> None:
    """Train the recipe's ensemble, write a checked submission, and print member and ensemble scores.

    Re-running the same command after an interruption resumes the unfinished run.
    """
    from kagglekit.pipeline import run as run_pipeline

    if sample and data:
        fail(DataError("Give either --sample or --data, not both."))
    try:
        result = run_pipeline(
            _competition(competition), recipe, data=data, sample=sample, answers=answers,
            runs_dir=runs, submissions_dir=submissions, name=name, fresh=fresh,
        )  # fmt: skip
    except USER_ERRORS as error:
        fail(error)
    if not is_main_process():
        return  # the other ranks helped train; rank 0 reports
    _print_result(result)
    if not result.check.ok:
        raise typer.Exit(1)


def _print_result(result) -> None:
    metric = get_metric(result.metric)
    arrow = "higher is better" if metric.greater_is_better else "lower is better"
    table = Table(title=f"{result.competition.name}: validation {metric.name} ({arrow})")
    for column in ("member", "arch", "rows", f"{metric.name} (TTA)", "accuracy per task, no TTA", "train s"):
        table.add_column(column, justify="right" if column in ("rows", "train s") else "left")
    for m in result.members:
        tasks = ", ".join(f"{task} {score:.3f}" for task, score in m.task_scores.items())
        seconds = "reused" if m.reused else f"{m.train_seconds:.0f}"
        table.add_row(m.name, m.arch, str(m.valid_rows), f"{m.valid_score:.4f}", tasks, seconds)
    ensemble = "no honest score" if result.ensemble_score is None else f"[bold]{result.ensemble_score:.4f}[/]"
    how = "mean of probabilities" if result.tuned_weights is None else f"weights {result.tuned_weights} (tuned)"
    table.add_row("[bold]ensemble[/]", how, str(result.ensemble_rows), ensemble, "", "")
    console.print(table)
    if result.thresholds is not None:
        t = result.thresholds
        console.print(
            f"Thresholds: one global {t.global_threshold:.2f} → {metric.name} {t.global_score:.4f}; per tag → "
            f"{t.per_tag_score:.4f}; using [bold]{t.chosen.replace('_', ' ')}[/]"
        )
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    print_check(result.check)
    console.print(f"Submission: [bold]{result.submission}[/]\nRun record: {result.folder / 'run.json'}")
    if result.test_score is not None:
        console.print(f"Test {metric.name} against the hidden answers: [bold]{result.test_score:.4f}[/]")


@app.command()
def check(
    file: Annotated[Path, typer.Argument(help="The submission CSV to check.")],
    competition: Annotated[str, typer.Option(help="Competition name (see `kagglekit list`).")],
    sample_submission: Annotated[Path | None, typer.Option(help="The competition's sample submission.")] = None,
    against: Annotated[list[Path] | None, typer.Option(help="Earlier submission(s) to compare with.")] = None,
) -> None:
    """Validate a submission (columns, ids, rows, values) and compare it with earlier submissions."""
    if not file.is_file():
        fail(FileNotFoundError(f"{file}: no such file."))
    report = check_submission(file, _competition(competition), sample_submission, against=against or [])
    print_check(report)
    if not report.ok:
        raise typer.Exit(1)


# Kaggle itself: download, submit and history (kagglekit.cli_kaggle), listed after the local commands.
app.command()(cli_kaggle.download)
app.command()(cli_kaggle.submit)
app.command()(cli_kaggle.submissions)
app.command()(cli_predict.predict)
app.add_typer(kaggle_app, name="kaggle")  # packs, notebooks and fan-out on Kaggle
