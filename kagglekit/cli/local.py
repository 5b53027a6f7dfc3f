"""The local commands: `list`, `sample`, `run` and `check`."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from kagglekit.cli.common import console, print_check, print_table
from kagglekit.errors import DataError
from kagglekit.registry import get_competition, list_competitions

if TYPE_CHECKING:
    from kagglekit.pipeline.job import RunResult


def list_command() -> None:
    """List the competitions kagglekit knows, with their Kaggle slug, tasks and metric."""
    competitions = [get_competition(name) for name in list_competitions()]
    table = Table("name")
    table.add_column("Kaggle slug", min_width=max(len(c.slug) for c in competitions))  # never cut: it is typed
    for column in ("tasks (* = submitted)", "metric", "submission", "recipes"):
        table.add_column(column)
    for c in competitions:
        tasks = ", ".join(f"{t}{'*' if t == c.target_task else ''} ({task.kind}-label)" for t, task in c.tasks.items())
        recipes = ", ".join(sorted(p.stem for p in c.recipes_dir.glob("*.toml"))) if c.recipes_dir else ""
        table.add_row(c.name, c.slug, tasks, c.metric, c.submission.kind, recipes)
    console.print(table)


def sample(
    competition: Annotated[str, typer.Argument(help="Competition name (see `kagglekit list`).")],
    dest: Annotated[Path, typer.Argument(help="Folder to write the sample into.")],
    seed: Annotated[int, typer.Option(help="Random seed of the generator.")] = 0,
    n_train: Annotated[int, typer.Option(help="Approximate number of training images.")] = 400,
    n_test: Annotated[int, typer.Option(help="Number of test images.")] = 150,
) -> None:
    """Write a small synthetic dataset in the competition's exact file layout (answers kept beside it)."""
    from kagglekit.pipeline.preflight import check_writable
    from kagglekit.samples.writer import write_sample

    check_writable(dest, "DEST")
    data = write_sample(get_competition(competition), dest, seed=seed, n_train=n_train, n_test=n_test)
    console.print(f"Competition files: {data.data_dir}\nHidden test answers: {data.answers}")


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
    corrections: Annotated[
        Path | None,
        typer.Option(
            help="CSV of id,action,label rows (exclude or relabel) applied to the training labels; "
            "e.g. the review.csv of `kagglekit review`, marked. Your data files are never edited."
        ),
    ] = None,
) -> None:
    """Train the recipe's ensemble, write a checked submission, and print member and ensemble scores.

    Re-running the same command after an interruption resumes the unfinished run; while that run is still going,
    the same command is refused (--fresh starts a separate one).
    """
    if sample and data:
        raise DataError("Give either --sample or --data, not both.")
    chosen = get_competition(competition)  # a mistake is reported before the pipeline's libraries load
    from kagglekit.pipeline.job import run as run_pipeline
    from kagglekit.train.distributed import is_main_process

    result = run_pipeline(chosen, recipe, data=data, sample=sample, answers=answers, runs_dir=runs,
                          submissions_dir=submissions, name=name, fresh=fresh, corrections=corrections)  # fmt: skip
    if not is_main_process():
        return  # the other ranks helped train; rank 0 reports
    _print_result(result)
    if not result.check.ok:
        raise typer.Exit(1)


def _score(value: float | None) -> str:
    return "diverged" if value is None else f"{value:.4f}"


def _print_result(result: RunResult) -> None:
    from kagglekit.submission.metrics import get_metric

    metric, ens = get_metric(result.metric), result.ensemble
    arrow = "higher is better" if metric.greater_is_better else "lower is better"
    table = Table(title=f"{result.competition.name}: validation {metric.name} ({arrow})")
    columns = ("member", "arch", "rows", metric.name, "TTA gain", "constant", "accuracy per task, no TTA", "train s")
    for column in columns:
        table.add_column(column, justify="right" if column in ("rows", "train s") else "left", overflow="fold")
    for m in result.members:
        tasks = ", ".join(f"{task} {score:.3f}" for task, score in m.task_scores.items())
        if m.last_epoch_scores:  # averaged epochs: the last epoch's score beside the average's
            tasks += " (last epoch " + ", ".join(f"{s:.3f}" for s in m.last_epoch_scores.values()) + ")"
        seconds = "reused" if m.reused else f"{m.train_seconds:.0f}"
        name = escape(m.name) + ("" if not m.broken else " [red](broken)[/]" if m.name in ens.excluded
                                 else " [yellow](broken, kept)[/]")  # fmt: skip
        score = _score(m.valid_score) + (" TTA" if m.tta_used else "")
        gain = "-" if m.tta_gain is None else f"{m.tta_gain:+.4f}"
        constant = "-" if m.prior_score is None else f"{m.prior_score:.4f}"
        table.add_row(name, m.arch, str(m.valid_rows), score, gain, constant, tasks, seconds)
    score = "no honest score" if ens.score is None else f"[bold]{ens.score:.4f}[/]"
    how = f"weights {ens.weights} (tuned)" if ens.tuned_weights else "mean of probabilities"
    table.add_row("[bold]ensemble[/]", how, str(ens.rows), score, "", "", "", "")
    print_table(table)
    if ens.thresholds is not None:
        t = ens.thresholds
        console.print(
            f"Thresholds: one global {t.global_threshold:.2f} → {metric.name} {t.global_score:.4f}; per tag → "
            f"{t.per_tag_score:.4f}; using [bold]{t.chosen.replace('_', ' ')}[/]"
        )
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    print_check(result.check)
    console.print(f"Submission: [bold]{escape(str(result.submission))}[/]")
    console.print(f"Run record: {escape(str(result.folder / 'run.json'))}")
    if result.test_score is not None:
        console.print(f"Test {metric.name} against the hidden answers: [bold]{result.test_score:.4f}[/]")
    if result.report is not None:
        console.print(f"Report: [bold]{escape(str(result.report))}[/]")


def check(
    file: Annotated[Path, typer.Argument(help="The submission CSV to check.")],
    competition: Annotated[
        str | None,
        typer.Option(help="Competition name (see `kagglekit list`); default: the one the file was written for."),
    ] = None,
    sample_submission: Annotated[
        Path | None,
        typer.Option(help="The competition's sample submission; default: found beside the data the file was made for."),
    ] = None,
    against: Annotated[list[Path] | None, typer.Option(help="Earlier submission(s) to compare with.")] = None,
) -> None:
    """Validate a submission (columns, ids, rows, values) and compare it with earlier submissions.

    Repeat --against for each earlier file; files made for other test images are listed, not compared.
    """
    from kagglekit.submission.checks import check_submission
    from kagglekit.submission.sidecar import find_sample_submission, submission_competition

    if not file.is_file():
        raise DataError(f"{file}: {'a folder, not a submission file' if file.is_dir() else 'no such file'}.")
    spec = submission_competition(file, competition)
    if sample_submission is None:
        sample_submission = find_sample_submission(spec, file)
        if sample_submission is not None:
            console.print(f"[dim]{spec.name}: checking against {escape(str(sample_submission))}[/]")
    report = check_submission(file, spec, sample_submission, against=against or [])
    print_check(report)
    if not report.ok:
        raise typer.Exit(1)
