"""`kagglekit predict`: a finished run's ensemble on image files, from the run folder alone."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from kagglekit.cli.common import console
from kagglekit.errors import DataError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp", ".dcm"}


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


def predict(
    run_dir: Annotated[Path, typer.Argument(help="A run folder (runs/<competition>/<stamp>_<name>).")],
    images: Annotated[list[Path], typer.Argument(help="Image files, or folders of images, to predict.")],
    output: Annotated[Path | None, typer.Option(help="Write every class probability to this CSV.")] = None,
    batch_size: Annotated[int, typer.Option(help="Images per forward pass.")] = 32,
) -> None:
    """Predict images with a finished run's members (no TTA), and print the top class per task."""
    import pandas as pd  # pandas, torch and fastai load only when the command runs, not for `kagglekit --help`

    from kagglekit._io import write_csv
    from kagglekit.predict.export import predict_run

    probs = predict_run(run_dir, _image_files(images), batch_size=batch_size)
    table = Table("image", *probs.tasks, title=f"{run_dir.name}: top class per task")
    table.columns[0].overflow = "fold"
    for row, image_id in enumerate(probs.ids):
        cells = []
        for task, matrix in probs.tasks.items():
            best = int(matrix[row].argmax())
            cells.append(f"{escape(probs.vocab[task][best])} ({matrix[row, best]:.2f})")
        table.add_row(escape(image_id), *cells)
    console.print(table)
    if output is not None:
        columns = {"id": probs.ids}
        for task, matrix in probs.tasks.items():
            columns.update({f"{task}:{name}": matrix[:, i] for i, name in enumerate(probs.vocab[task])})
        write_csv(output, pd.DataFrame(columns))
        console.print(f"Probabilities: [bold]{escape(str(output))}[/]")
