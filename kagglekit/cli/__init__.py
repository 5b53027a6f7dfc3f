"""The `kagglekit` command line: one typer app; each command imports what it needs when it runs."""

from __future__ import annotations

import logging
import sys
import warnings
from typing import Annotated

import typer
from rich.logging import RichHandler

from kagglekit.cli import insight, kaggle, kernels, local, predict
from kagglekit.cli.common import Commands, console

app = typer.Typer(
    cls=Commands,
    help="From 'joined the competition' to a validated Kaggle submission.",
    no_args_is_help=True,
    # click's plain help and usage errors: flags read as flags (rich's help shows `--fresh <bool>`) and no
    # 80-column box in a pipe or a log; `Commands` sizes them for this invocation
    rich_markup_mode=None,
    pretty_exceptions_show_locals=False,  # locals may hold credentials; a bug's traceback must not print them
    pretty_exceptions_enable=sys.stderr.isatty(),  # in a pipe or a log, Python's own traceback: no 80-column box
)


# Deprecation notices raised inside the libraries kagglekit drives are for kagglekit's developers (`make test` shows
# them), not for its users: every command once printed torch's `torch.jit.script is deprecated`.
LIBRARIES = r"(torch|torchvision|fastai|fastcore|fasttransform|timm|pandas|sklearn|accelerate|pydicom|PIL)(\.|$)"


def quiet_library_warnings() -> None:
    """Hide DeprecationWarning, PendingDeprecationWarning and FutureWarning raised inside those libraries."""
    for category in (DeprecationWarning, PendingDeprecationWarning, FutureWarning):
        warnings.filterwarnings("ignore", category=category, module=LIBRARIES)


class _PlainFormatter(logging.Formatter):
    """For pipes and logs: the message alone, warnings and errors marked, nothing padded."""

    def format(self, record: logging.LogRecord) -> str:
        message = super().format(record)
        return message if record.levelno < logging.WARNING else f"{record.levelname.lower()}: {message}"


def _print_version(value: bool) -> None:
    if value:
        from kagglekit import __version__

        console.print(f"kagglekit {__version__}")
        raise typer.Exit()


@app.callback()
def main(
    verbose: Annotated[bool, typer.Option("--verbose", "-v", help="Show debug logging.")] = False,
    version: Annotated[
        bool, typer.Option("--version", callback=_print_version, is_eager=True, help="Print the version and exit.")
    ] = False,
) -> None:
    quiet_library_warnings()
    if console.is_terminal:
        handler: logging.Handler = RichHandler(console=console, show_path=False, show_time=False)
    else:
        handler = logging.StreamHandler(console.file)
        handler.setFormatter(_PlainFormatter("%(message)s"))
    # the message alone (RichHandler draws the level beside it; without a format basicConfig adds "INFO:name:")
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO, format="%(message)s", handlers=[handler], force=True
    )
    for noisy in ("PIL", "fsspec", "matplotlib", "h5py", "urllib3"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    logging.getLogger("pydicom").setLevel(logging.ERROR)  # per-file header complaints: the cache reports bad files


app.command("list")(local.list_command)
app.command()(local.sample)
app.command()(local.run)
app.command()(local.check)
app.command()(predict.predict)
app.command("lr-find")(insight.lr_find)
app.command()(insight.report)
app.command()(insight.review)
app.command()(predict.export)
app.command()(kaggle.download)
app.command()(kaggle.submit)
app.command()(kaggle.submissions)
app.add_typer(kernels.kaggle_app, name="kaggle")  # packs, notebooks and fan-out on Kaggle
