"""`kagglekit kaggle ...`: offline packs and notebooks on Kaggle (the `kaggle` sub-app of kagglekit.cli)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from kagglekit.cli.common import Commands, console, print_check
from kagglekit.defaults import runs_dir
from kagglekit.registry import get_competition

kaggle_app = typer.Typer(
    cls=Commands,
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


def _show(pack, push: bool) -> None:
    from kagglekit.kaggle.packs import push_dataset

    for file in pack.files:
        console.print(f"  {file.name} ({file.stat().st_size / 1e6:.1f} MB)")
    console.print(f"Dataset {pack.ref} ready in [bold]{pack.folder}[/] ({pack.metadata.name} written)")
    if push:
        console.print(f"[green]✓[/] Created private dataset: {push_dataset(pack)}")


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
    from kagglekit.kaggle import packs

    pack = packs.pack_wheels(dest, dataset, packages=package or packs.KAGGLE_LACKS,
                             python_versions=python_version or packs.KAGGLE_PYTHONS, source=source)  # fmt: skip
    _show(pack, push)


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
    from kagglekit.kaggle.packs import pack_weights as pack

    _show(pack(archs, dest, dataset, files=weights_from), push)


AcceleratorOption = Annotated[
    str,
    typer.Option(help="Kaggle's accelerator (machine_shape): NvidiaTeslaT4 (two T4s), NvidiaL4, ..., or cpu."),
]


@kaggle_app.command("push-kernel")
def push_kernel(
    competition: Annotated[str, typer.Argument(help="Competition name (see `kagglekit list`).")],
    recipe: Annotated[str, typer.Option(help="Recipe name of the competition, or a .toml file.")] = "gpu",
    inference: Annotated[
        str | None,
        typer.Option(help="The inference notebook for this pack dataset (from `kagglekit export --push`)."),
    ] = None,
    wheels_dataset: WheelsOption = None,
    weights_dataset: WeightsOption = None,
    owner: OwnerOption = None,
    accelerator: AcceleratorOption = "NvidiaTeslaT4",
    time_budget: Annotated[
        float | None, typer.Option(help="With --inference: hours the prediction may take (default: 9 minus 1).")
    ] = None,
    dest: Annotated[
        Path | None, typer.Option(help="Where the notebook's folder goes (default: runs/<competition>/kernels).")
    ] = None,
    push: Annotated[bool, typer.Option("--push/--no-push", help="Push it, or only write the folder.")] = True,
) -> None:
    """Write a notebook and its kernel-metadata.json (accelerator named, internet off) and push it to Kaggle: the
    offline notebook that runs a recipe, or with --inference the notebook that predicts from a pack."""
    from kagglekit.kaggle.kernels import push_kernel as send
    from kagglekit.kaggle.kernels import write_inference_kernel, write_kernel
    from kagglekit.kaggle.packs import owner_of

    dest = dest or runs_dir() / get_competition(competition).name / "kernels"
    if inference is not None:
        folder = write_inference_kernel(dest, competition, inference, owner_of(owner), wheels_dataset=wheels_dataset,
                                        time_budget=time_budget, accelerator=accelerator)  # fmt: skip
    else:
        folder = write_kernel(dest, competition, recipe, owner_of(owner), wheels_dataset=wheels_dataset,
                              weights_dataset=weights_dataset, accelerator=accelerator)  # fmt: skip
    console.print(f"Notebook written to [bold]{folder}[/]")
    if push:
        kernel = send(folder)
        console.print(f"[green]✓[/] Pushed {kernel.ref} version {kernel.version}: {kernel.url}")
        if inference is not None:
            console.print(f"Once it has run: `kagglekit submit --kernel {kernel.ref} -m MESSAGE`")


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
    runs: Annotated[Path | None, typer.Option(help="Folder for run records (default: runs).")] = None,
    submissions: Annotated[Path | None, typer.Option(help="Folder for submissions (default: submissions).")] = None,
    poll_interval: Annotated[float, typer.Option(help="Seconds between status checks.")] = 60.0,
    timeout: Annotated[float, typer.Option(help="Seconds to wait for all notebooks.")] = 12 * 3600.0,
) -> None:
    """Train each ensemble member in its own Kaggle notebook, then ensemble their probabilities here."""
    from kagglekit.kaggle.fanout import fanout as fan_out

    result = fan_out(
        competition, recipe, owner=owner, wheels_dataset=wheels_dataset, weights_dataset=weights_dataset,
        data=data, runs_dir=runs, submissions_dir=submissions, poll_interval=poll_interval, timeout=timeout,
        console=console,
    )  # fmt: skip
    print_check(result.written.check)
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}")
    console.print(f"Submission: [bold]{escape(str(result.written.path))}[/]")
    console.print(f"Run record: {escape(str(result.folder / 'run.json'))}")
    if not result.written.check.ok:
        raise typer.Exit(1)
