"""`kagglekit kaggle ...`: offline packs and notebooks on Kaggle; kagglekit.cli adds `kaggle_app` as a sub-app."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from kagglekit import kaggle_kernels, kaggle_packs
from kagglekit.cli_common import USER_ERRORS, console, fail, print_check
from kagglekit.registry import get_competition

kaggle_app = typer.Typer(
    help="Run on Kaggle: offline packs (wheels, weights) as private datasets, notebooks, fan-out.",
    no_args_is_help=True,
)


DatasetOption = Annotated[
    str | None, typer.Option("--dataset", help="Kaggle dataset id OWNER/SLUG or SLUG (default: your username).")
]
PushOption = Annotated[bool, typer.Option("--push", help="Create it as a private Kaggle dataset.")]
OwnerOption = Annotated[str | None, typer.Option(help="Kaggle username owning the notebooks (default: credentials').")]
WheelsOption = Annotated[
    str | None, typer.Option(help="Wheels dataset OWNER/SLUG to attach (default: OWNER/kagglekit-wheels).")
]
WeightsOption = Annotated[
    str | None,
    typer.Option(help="Weights dataset OWNER/SLUG to attach (default: OWNER/kagglekit-weights if pretrained)."),
]


def _show(pack: kaggle_packs.Pack, push: bool) -> None:
    for file in pack.files:
        console.print(f"  {file.name} ({file.stat().st_size / 1e6:.1f} MB)")
    console.print(f"Dataset {pack.ref} ready in [bold]{pack.folder}[/] ({pack.metadata.name} written)")
    if push:
        console.print(f"[green]✓[/] Created private dataset: {kaggle_packs.push_dataset(pack)}")


@kaggle_app.command("pack-wheels")
def pack_wheels(
    dest: Annotated[Path, typer.Argument(metavar="DIR", help="Folder for the wheels and dataset-metadata.json.")],
    dataset: DatasetOption = None,
    package: Annotated[
        list[str] | None, typer.Option("--package", "-p", help="Pack this package instead of the default list.")
    ] = None,
    python_version: Annotated[
        list[str] | None, typer.Option(help="Python version(s) of the Kaggle image (default: 3.11 and 3.12).")
    ] = None,
    source: Annotated[Path | None, typer.Option(help="kagglekit source checkout to build its wheel from.")] = None,
    push: PushOption = False,
) -> None:
    """Gather wheels of kagglekit and of what Kaggle's image lacks, for the image's Python and platform."""
    try:
        pack = kaggle_packs.pack_wheels(
            dest, dataset, packages=package or kaggle_packs.KAGGLE_LACKS,
            python_versions=python_version or kaggle_packs.KAGGLE_PYTHONS, source=source,
        )  # fmt: skip
        _show(pack, push)
    except USER_ERRORS as error:
        fail(error)


@kaggle_app.command("pack-weights")
def pack_weights(
    archs: Annotated[
        list[str], typer.Argument(metavar="ARCH", help="timm architectures, e.g. convnext_small.fb_in22k_ft_in1k.")
    ],
    dest: Annotated[
        Path, typer.Argument(metavar="DIR", help="Folder for <arch>.safetensors, <arch>.json and the metadata.")
    ],
    weights_from: Annotated[
        list[Path] | None,
        typer.Option("--from", help="Weights file, once per ARCH in order (default: this machine's timm caches)."),
    ] = None,
    dataset: DatasetOption = None,
    push: PushOption = False,
) -> None:
    """Store timm weights as <arch>.safetensors plus their config, for recipes run with internet off."""
    try:
        _show(kaggle_packs.pack_weights(archs, dest, dataset, files=weights_from), push)
    except USER_ERRORS as error:
        fail(error)


@kaggle_app.command("push-kernel")
def push_kernel(
    competition: Annotated[str, typer.Argument(help="Competition name (see `kagglekit list`).")],
    recipe: Annotated[str, typer.Option(help="Recipe name of the competition, or a .toml file.")] = "gpu",
    wheels_dataset: WheelsOption = None,
    weights_dataset: WeightsOption = None,
    owner: OwnerOption = None,
    dest: Annotated[
        Path | None, typer.Option(help="Where the notebook's folder goes (default: runs/<competition>/kernels).")
    ] = None,
    push: Annotated[bool, typer.Option("--push/--no-push", help="Push it, or only write the folder.")] = True,
) -> None:
    """Write the offline notebook and its kernel-metadata.json (GPU on, internet off) and push it to Kaggle."""
    try:
        dest = dest or Path("runs") / get_competition(competition).name / "kernels"
        folder = kaggle_kernels.write_kernel(
            dest, competition, recipe, kaggle_packs.owner_of(owner), wheels_dataset=wheels_dataset,
            weights_dataset=weights_dataset,
        )  # fmt: skip
        console.print(f"Notebook written to [bold]{folder}[/]")
        if push:
            kernel = kaggle_kernels.push_kernel(folder)
            console.print(f"[green]✓[/] Pushed {kernel.ref} version {kernel.version}: {kernel.url}")
    except USER_ERRORS as error:
        fail(error)


@kaggle_app.command()
def fanout(
    competition: Annotated[str, typer.Argument(help="Competition name (see `kagglekit list`).")],
    recipe: Annotated[str, typer.Option(help="Recipe name of the competition, or a .toml file.")] = "gpu",
    wheels_dataset: WheelsOption = None,
    weights_dataset: WeightsOption = None,
    owner: OwnerOption = None,
    data: Annotated[
        Path | None, typer.Option(help="The competition's files here, to order and check the submission's ids.")
    ] = None,
    runs: Annotated[Path, typer.Option(help="Folder for run records.")] = Path("runs"),
    submissions: Annotated[Path, typer.Option(help="Folder for submission files.")] = Path("submissions"),
    poll_interval: Annotated[float, typer.Option(help="Seconds between status checks.")] = 60.0,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for all notebooks.")] = 12 * 3600.0,
) -> None:
    """Train each ensemble member in its own Kaggle notebook, then ensemble their probabilities here."""
    try:
        result = kaggle_kernels.fanout(
            competition, recipe, owner=owner, wheels_dataset=wheels_dataset, weights_dataset=weights_dataset,
            data=data, runs_dir=runs, submissions_dir=submissions, poll_interval=poll_interval, timeout=timeout,
            console=console,
        )  # fmt: skip
    except USER_ERRORS as error:
        fail(error)
    print_check(result.check)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    console.print(f"Submission: [bold]{result.submission}[/]\nRun record: {result.folder / 'run.json'}")
    if not result.check.ok:
        raise typer.Exit(1)
