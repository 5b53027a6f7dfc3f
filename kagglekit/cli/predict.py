"""`kagglekit export` and `kagglekit predict`: a finished run as an inference pack, and predictions from a pack (or
a run folder): a whole checked submission, or loose image files."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from kagglekit.cli.common import console, errors, print_check
from kagglekit.errors import DataError

if TYPE_CHECKING:
    from kagglekit.ensemble.probabilities import Probabilities

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".dcm"}

ImagesArgument = Annotated[
    list[Path] | None, typer.Argument(help="Image files, or folders of images, to predict (instead of --data).")
]
DataOption = Annotated[
    Path | None,
    typer.Option(
        help="The competition's folder: predict its test set into a checked submission (in a Kaggle notebook the "
        "default is its input)."
    ),
]
BudgetOption = Annotated[
    float | None,
    typer.Option(
        help="Hours the prediction may take (default in a Kaggle notebook: 8, Kaggle's 9 minus a margin; none "
        "elsewhere). TTA passes, then the lowest-weight members, are dropped to fit."
    ),
]


def _image_files(images: list[Path]) -> list[Path]:
    """The files given, with each folder replaced by the images directly inside it (sorted)."""
    files = []
    for path in images:
        if path.is_dir():
            files.extend(sorted(p for p in path.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES))
        elif path.is_file():
            files.append(path)
        else:
            raise DataError(f"{path}: no such file or folder.")
    if not files:
        raise DataError(f"No images found in {', '.join(map(str, images))}.")
    return files


def _show_top_classes(probs: Probabilities, title: str) -> None:
    table = Table("image", *probs.tasks, title=title)
    table.columns[0].overflow = "fold"
    for row, image_id in enumerate(probs.ids):
        cells = []
        for task, matrix in probs.tasks.items():
            best = int(matrix[row].argmax())
            cells.append(f"{escape(probs.vocab[task][best])} ({matrix[row, best]:.2f})")
        table.add_row(escape(image_id), *cells)
    console.print(table)


def _predict_files(source: Path, images: list[Path], output: Path | None, tta: int | None) -> None:
    import pandas as pd  # pandas, torch and fastai load only when the command runs, not for `kagglekit --help`

    from kagglekit._io import write_csv
    from kagglekit.predict.files import predict_files

    result = predict_files(source, _image_files(images), tta=tta)
    probs = result.probabilities
    if probs is not None:
        _show_top_classes(probs, f"{source.name}: top class per task")
    if probs is not None and output is not None:
        columns = {"id": probs.ids}
        for task, matrix in probs.tasks.items():
            columns.update({f"{task}:{name}": matrix[:, i] for i, name in enumerate(probs.vocab[task])})
        write_csv(output, pd.DataFrame(columns))
        console.print(f"Probabilities: [bold]{escape(str(output))}[/]")
    for row in result.unreadable.itertuples():
        console.print(f"[bold red]✗[/] {escape(str(row.path))}: {escape(str(row.reason))}")
    if len(result.unreadable):
        total = len(result.unreadable) + (len(probs.ids) if probs is not None else 0)
        errors.print(f"[bold red]error:[/] {len(result.unreadable)} of {total} image(s) could not be read and were "
                      "not predicted (listed above).")  # fmt: skip
        raise typer.Exit(1)


def predict(
    source: Annotated[Path, typer.Argument(help="An inference pack (`kagglekit export`) or a finished run folder.")],
    images: ImagesArgument = None,
    data: DataOption = None,
    output: Annotated[Path | None, typer.Option(help="With IMAGES: write every class probability to this CSV.")] = None,
    tta: Annotated[int | None, typer.Option(help="TTA passes (default: the run's).")] = None,
    time_budget: BudgetOption = None,
    name: Annotated[
        str | None, typer.Option(help="Name of the record and submission (default: predict-<recipe>).")
    ] = None,
    runs: Annotated[Path | None, typer.Option(help="Folder for the prediction's record (default: runs).")] = None,
    submissions: Annotated[
        Path | None, typer.Option(help="Folder for submission files (default: submissions).")
    ] = None,
) -> None:
    """Predict with a pack or a run: the competition's test set as a checked submission (the same file `run` writes),
    or IMAGES, printing the top class per task."""
    if images and data is not None:
        raise DataError("Give either IMAGES or --data, not both.")
    if output is not None:
        if not images:
            raise DataError("--output is for IMAGES; a submission goes to --submissions.")
        if output.is_dir():
            raise DataError(f"--output {output} is a folder; name the CSV file to write.")
        from kagglekit.pipeline.preflight import check_writable

        check_writable(output.parent.absolute(), "--output")
    if images:
        _predict_files(source, images, output, tta)
        return
    from kagglekit.predict.submission import predict_submission

    result = predict_submission(source, data, time_budget=time_budget, tta=tta, name=name, runs_dir=runs,
                                submissions_dir=submissions)  # fmt: skip
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    print_check(result.check)
    console.print(f"Submission: [bold]{escape(str(result.submission))}[/]")
    console.print(f"Record: {escape(str(result.folder / 'run.json'))}")
    if not result.check.ok:
        raise typer.Exit(1)


def export(
    run_dir: Annotated[Path, typer.Argument(help="A finished run folder (runs/<competition>/<stamp>_<name>).")],
    dest: Annotated[Path, typer.Argument(help="A new (or empty) folder for the pack.")],
    push: Annotated[bool, typer.Option("--push", help="Upload it as a private Kaggle dataset.")] = False,
    dataset: Annotated[
        str | None,
        typer.Option(help="Kaggle dataset id OWNER/SLUG or SLUG (default: kagglekit-<competition>-<run>)."),
    ] = None,
) -> None:
    """Write a run's inference pack: weights (safetensors) and JSON only, everything `predict` needs."""
    from kagglekit.predict.pack import export_pack

    pack = export_pack(run_dir, dest)
    for member in pack.members:
        size = sum(p.weights.stat().st_size for p in member.parts) / 1e6
        console.print(f"  {escape(member.name)} ({member.arch}): weight {member.weight:g}, {len(member.parts)} "
                      f"model(s), {size:.1f} MB")  # fmt: skip
    thresholds = f", {pack.thresholds.chosen.replace('_', ' ')} thresholds" if pack.thresholds else ""
    console.print(f"Inference pack of {pack.competition} in [bold]{escape(str(dest))}[/]: TTA {pack.tta}{thresholds}")
    if push:
        from kagglekit.kaggle.packs import inference_dataset, push_dataset

        console.print(f"[green]✓[/] Created private dataset: {push_dataset(inference_dataset(pack, dataset))}")
