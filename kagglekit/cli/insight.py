"""`kagglekit lr-find`, `report` and `review`: see what the model gets wrong. Each imports what it needs when it
runs (matplotlib, torch and pandas load only then)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from kagglekit.cli.common import console, print_table
from kagglekit.errors import DataError, RecipeError
from kagglekit.registry import get_competition

DataOption = Annotated[
    Path | None, typer.Option("--data", help="The competition's files (default: the run's data folder).")
]


def lr_find(
    competition: Annotated[str, typer.Argument(help="Competition name (see `kagglekit list`).")],
    recipe: Annotated[str, typer.Option(help="Recipe name of the competition, or a .toml file.")] = "sample",
    member: Annotated[str | None, typer.Option(help="The recipe member (default: the first).")] = None,
    data: Annotated[Path | None, typer.Option(help="Folder with the extracted Kaggle download.")] = None,
    sample: Annotated[bool, typer.Option("--sample", help="Use (and cache) the bundled synthetic sample.")] = False,
    out: Annotated[
        Path | None, typer.Option(help="Folder for lr_find.png/.csv (default: runs/<competition>/lr_find/<stamp>).")
    ] = None,
    num_it: Annotated[int, typer.Option(help="Batches of the range test (the rate grows from 1e-7 to 10).")] = 100,
) -> None:
    """Run fastai's lr_find for a recipe member on its real loaders and suggest a learning rate.

    Saves the plot (lr_find.png) and the loss-vs-lr table (lr_find.csv), and prints the valley and slide
    suggestions.
    """
    from kagglekit._io import timestamp
    from kagglekit.data.locate import locate_data
    from kagglekit.data.splits import member_splits
    from kagglekit.defaults import runs_dir
    from kagglekit.pipeline.data import prepare_data
    from kagglekit.recipe import load_recipe
    from kagglekit.samples.writer import ensure_sample
    from kagglekit.train.lr_find import lr_find_member

    if sample and data:
        raise DataError("Give either --sample or --data, not both.")
    spec = get_competition(competition)
    parsed = load_recipe(spec.recipe_path(recipe))
    names = [m.name for m in parsed.members]
    if member is not None and member not in names:
        raise RecipeError(f"Recipe {parsed.name!r} has no member {member!r}; its members: {', '.join(names)}.")
    chosen = parsed.members[names.index(member) if member else 0]
    data_dir = locate_data(spec, ensure_sample(spec).data_dir if sample else data)
    prepared = prepare_data(spec, data_dir, recipe=parsed)  # the image cache at the recipe's sizes, as `run` has it
    out = out or runs_dir() / spec.name / "lr_find" / f"{timestamp()}_{chosen.name}"
    _, is_valid = member_splits(chosen, parsed, prepared.items.train, spec, out)[0]  # the first fold of k-fold
    finding = lr_find_member(chosen, spec, prepared.items.train, is_valid, prepared.vocab,
                             parsed.member_seed(chosen), parsed.num_workers, num_it)  # fmt: skip
    paths = finding.save(out)
    console.print(f"lr_find for {escape(chosen.name)} ({chosen.arch}, batch {chosen.batch_size}): "
                  f"valley [bold]{finding.valley:.2e}[/], slide [bold]{finding.slide:.2e}[/]")  # fmt: skip
    console.print(f'Set lr = {finding.valley:.2g} in the recipe, or lr = "find" to use the valley on every run.')
    console.print(f"Plot: {escape(str(paths['plot']))}\nTable: {escape(str(paths['table']))}")


def report(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (runs/<competition>/<stamp>_<name>).")],
    data: DataOption = None,
) -> None:
    """Write (again) the run's report.html: data, training curves, scores, mistakes, top losses, timings."""
    from kagglekit.report.build import write_report

    console.print(f"Report: [bold]{escape(str(write_report(run_dir, data_dir=data)))}[/]")


def review(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (runs/<competition>/<stamp>_<name>).")],
    data: DataOption = None,
    top: Annotated[int, typer.Option(help="Images on the contact sheet (review.html).")] = 48,
) -> None:
    """Rank every training image by how likely its label is wrong: review.csv and a contact sheet of the top rows.

    Mark rows of review.csv (action exclude, or relabel with a label) and pass it to `kagglekit run --corrections`.
    """
    import pandas as pd

    from kagglekit.report.review import write_review

    csv, html = write_review(run_dir, data_dir=data, top=top)
    ranked = pd.read_csv(csv, dtype=str, keep_default_na=False).head(10)
    table = Table("rank", "id", "given", "predicted", "probability", "loss", "split", title="most likely mislabelled")
    for row in ranked.itertuples():
        table.add_row(row.rank, escape(row.id), escape(row.given_label), escape(row.predicted_label),
                      row.probability, row.loss, row.split)  # fmt: skip
    print_table(table)
    console.print(f"Review: [bold]{escape(str(csv))}[/]\nContact sheet: [bold]{escape(str(html))}[/]")
