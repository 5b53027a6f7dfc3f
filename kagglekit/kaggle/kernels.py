"""Kaggle notebooks from the command line: push the offline notebook to run a recipe on Kaggle's GPUs, or fan an
ensemble out over one notebook per member and ensemble their probabilities here.

The notebook (notebooks/kaggle_offline.ipynb) installs kagglekit from an attached wheels dataset and runs with
internet off, as code competitions demand. Pushing writes a copy whose parameters cell carries the competition, the
recipe's text and the datasets, next to the `kernel-metadata.json` the client reads. Fan-out works because members
only meet through their saved probabilities: each notebook trains one member and leaves its probabilities in its
output, which is downloaded into a local run folder laid out like any other run.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
import sys
import time
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console

from kagglekit import notebooks
from kagglekit._io import timestamp, write_json
from kagglekit.data.locate import locate_data
from kagglekit.defaults import runs_dir as default_runs_dir
from kagglekit.ensemble.probabilities import Probabilities
from kagglekit.errors import KaggleError
from kagglekit.kaggle.auth import Credentials, client_errors, find_credentials, kaggle_client
from kagglekit.kaggle.packs import WEIGHTS_SLUG, WHEELS_SLUG, owner_of
from kagglekit.pipeline.combine import ensemble_members
from kagglekit.pipeline.data import labels_only
from kagglekit.pipeline.members import MemberOutput
from kagglekit.pipeline.write import SubmissionOutput, write_and_check
from kagglekit.recipe import Recipe, load_recipe
from kagglekit.registry import get_competition
from kagglekit.runs import RunRecord

if TYPE_CHECKING:
    from kaggle.api.kaggle_api_extended import KaggleApi

NOTEBOOK = Path(notebooks.__file__).parent / "kaggle_offline.ipynb"  # the repository's notebooks/
KERNEL_METADATA = "kernel-metadata.json"
SLUG_MAX = 50
FINAL = {"complete", "error", "cancel_acknowledged"}  # kagglesdk KernelWorkerStatus names that end a session


def _parameter(default: str, about: str) -> Any:
    return field(default=default, metadata={"help": about})


@dataclass(frozen=True)
class NotebookParameters:
    """The notebook's parameters cell. Each value can be overridden by the environment variable KAGGLEKIT_<NAME>,
    which is how a test runs the notebook against local folders."""

    competition: str = _parameter("", "kagglekit's name of the competition (`kagglekit list`), or its Kaggle slug")
    recipe: str = _parameter("gpu", "a recipe name of the competition, or a .toml path")
    recipe_toml: str = _parameter("", "the recipe's text; when set, it is run instead of RECIPE's file")
    wheels_dataset: str = _parameter(
        WHEELS_SLUG, "attached wheels (owner/slug or slug) from `kagglekit kaggle pack-wheels`; '' if installed"
    )
    weights_dataset: str = _parameter(
        WEIGHTS_SLUG, "attached timm weights from `kagglekit kaggle pack-weights`; '' when none are needed"
    )
    member: str = _parameter("", "train only this ensemble member (`kagglekit kaggle fanout`); '' for all")
    pip_args: str = _parameter("", "extra `pip install` arguments, e.g. '--target DIR --no-deps' in tests")

    def cell(self) -> str:
        """The cell's source, as ruff formats it (the checked-in notebook holds the defaults)."""
        lines = [
            "# Parameters: `kagglekit kaggle push-kernel` rewrites this cell. Each value can be overridden by the",
            "# environment variable named in it.",
            "import os",
        ]
        for f in fields(self):
            value = json.dumps(getattr(self, f.name), ensure_ascii=False)  # a valid Python string literal
            lines += [
                "",
                f"# {f.metadata['help']}",
                f'{f.name.upper()} = os.environ.get("KAGGLEKIT_{f.name.upper()}", {value})',
            ]
        return "\n".join(lines)


def _slugify(text: str) -> str:
    """Kaggle's slug of a title (python-slugify, as the client checks it, for ASCII titles)."""
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def kernel_slug(competition: str, recipe: str, member: str | None = None) -> str:
    """The notebook's slug, also its title's: unique per competition, recipe and member, at most 50 characters."""
    slug = _slugify(" ".join(["kagglekit", competition, Path(recipe).stem, member or ""]))
    if len(slug) > SLUG_MAX:
        slug = f"{slug[: SLUG_MAX - 9].rstrip('-')}-{hashlib.sha1(slug.encode()).hexdigest()[:8]}"
    return slug


def _source_ref(dataset: str, owner: str) -> str:
    return dataset if "/" in dataset else f"{owner}/{dataset}"


def write_kernel(
    dest: Path,
    competition: str,
    recipe: str,
    owner: str,
    *,
    wheels_dataset: str | None = None,
    weights_dataset: str | None = None,
    member: str | None = None,
    notebook: Path = NOTEBOOK,
) -> Path:
    """Write `dest/<slug>/` with the notebook (parameters filled in) and its `kernel-metadata.json`; return it.

    Datasets default to the packs' default slugs under `owner`; weights only when a member has `pretrained =
    true`. The metadata asks for a private notebook on a GPU with internet off, as code competitions run it.
    """
    spec = get_competition(competition)
    recipe_path = spec.recipe_path(recipe)
    parsed = load_recipe(recipe_path)  # a broken recipe fails here, not an hour into a Kaggle session
    if member is not None and member not in [m.name for m in parsed.members]:
        raise KaggleError(f"Recipe {parsed.name!r} has no member {member!r}.")
    wheels = _source_ref(wheels_dataset or WHEELS_SLUG, owner)
    needs_weights = any(m.pretrained is True for m in parsed.members)
    weights = _source_ref(weights_dataset, owner) if weights_dataset else None
    if weights is None and needs_weights:
        weights = f"{owner}/{WEIGHTS_SLUG}"
    slug = kernel_slug(spec.name, parsed.name, member)
    folder = Path(dest) / slug
    parameters = NotebookParameters(
        competition=spec.name, recipe=parsed.name, recipe_toml=recipe_path.read_text(), wheels_dataset=wheels,
        weights_dataset=weights or "", member=member or "",
    )  # fmt: skip
    if not Path(notebook).is_file():
        raise KaggleError(f"The offline notebook {notebook} is missing; it ships with kagglekit's source checkout.")
    content = json.loads(Path(notebook).read_text())
    cells = [c for c in content["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise KaggleError(f"{notebook} needs exactly one code cell tagged 'parameters', found {len(cells)}.")
    cells[0]["source"] = parameters.cell()
    write_json(folder / notebook.name, content)
    write_json(
        folder / KERNEL_METADATA,
        {
            "id": f"{owner}/{slug}",
            "title": slug.replace("-", " "),  # slugifies back to the id, as the client wants
            "code_file": notebook.name,
            "language": "python",
            "kernel_type": "notebook",
            "is_private": True,
            "enable_gpu": True,
            "enable_tpu": False,
            "enable_internet": False,
            "dataset_sources": [wheels, *([weights] if weights else [])],
            "competition_sources": [spec.slug],
            "kernel_sources": [],
            "model_sources": [],
        },
    )
    return folder


@dataclass
class Kernel:
    """A pushed notebook and what Kaggle last said of its session."""

    member: str | None
    ref: str  # owner/slug
    url: str
    version: int | None
    status: str = "queued"
    failure: str | None = None


def _push(api: KaggleApi, credentials: Credentials, folder: Path, member: str | None = None) -> Kernel:
    metadata = json.loads((folder / KERNEL_METADATA).read_text())
    with client_errors(f"push the notebook in {folder}", credentials):
        response = api.kernels_push(str(folder))
    invalid = {
        "dataset": response.invalid_dataset_sources,
        "competition": response.invalid_competition_sources,
        "notebook": response.invalid_kernel_sources,
    }
    problems = [f"unknown {kind} source(s) {', '.join(refs)}" for kind, refs in invalid.items() if refs]
    if response.error:
        problems.insert(0, response.error)
    if problems:
        hint = ""
        if not response.error:
            hint = (
                " Create the datasets first (`kagglekit kaggle pack-wheels DIR --push`, `kagglekit kaggle "
                "pack-weights ARCH... DIR --push`) and join the competition on its website."
            )
        raise KaggleError(f"Kaggle refused notebook {metadata['id']}: {'; '.join(problems)}.{hint}")
    return Kernel(member, metadata["id"], response.url, response.version_number)


def push_kernel(folder: Path) -> Kernel:
    """Push a folder written by `write_kernel`; Kaggle saves a new version and starts running it."""
    credentials = find_credentials()
    return _push(kaggle_client(credentials), credentials, Path(folder))


# --- fan-out ---


@dataclass
class FanoutResult:
    folder: Path
    kernels: list[Kernel]
    written: SubmissionOutput
    notes: list[str] = field(default_factory=list)


def _poll(api: KaggleApi, credentials: Credentials, kernels: list[Kernel]) -> None:
    for kernel in kernels:
        if kernel.status in FINAL:
            continue
        with client_errors(f"get the status of notebook {kernel.ref}", credentials):
            response = api.kernels_status(kernel.ref)
        kernel.status = response.status.name.lower()
        kernel.failure = response.failure_message or None


def _wait(
    api: KaggleApi, credentials: Credentials, kernels: list[Kernel], poll_interval: float, timeout: float, console
) -> None:
    """Poll every session until each has ended, or fail at the timeout naming those still running."""
    deadline = time.monotonic() + timeout
    with console.status("Waiting for the notebooks on Kaggle…") as status:
        while True:
            _poll(api, credentials, kernels)
            status.update("Kaggle: " + ", ".join(f"{k.member} {k.status}" for k in kernels))
            if all(k.status in FINAL for k in kernels):
                return
            if time.monotonic() + poll_interval > deadline:
                running = ", ".join(f"{k.member} ({k.status}, {k.url})" for k in kernels if k.status not in FINAL)
                raise KaggleError(
                    f"Still running on Kaggle after {timeout:.0f} s: {running}. Their outputs stay on Kaggle "
                    "(`kaggle kernels output OWNER/SLUG -p DIR`)."
                )
            time.sleep(poll_interval)


def _download(api: KaggleApi, credentials: Credentials, kernel: Kernel, folder: Path) -> tuple[Probabilities, ...]:
    """The member's probabilities from the notebook's output, into `folder/members/<member>/` (the run layout);
    only those files, never the model weights the session also saved."""
    member = str(kernel.member)
    pattern = rf"^members/{re.escape(member)}/(valid|test)_[A-Za-z0-9_.-]+$"
    with client_errors(f"download the output of notebook {kernel.ref}", credentials):
        api.kernels_output(kernel.ref, str(folder), file_pattern=pattern, force=True, quiet=True)
    member_dir = folder / "members" / member
    try:
        return Probabilities.load(member_dir, "valid"), Probabilities.load(member_dir, "test")
    except (OSError, ValueError, KeyError) as error:
        raise KaggleError(
            f"Member {member}: notebook {kernel.ref} finished but its output lacks its probabilities ({error}); "
            f"its log is in {folder / (kernel.ref.split('/')[1] + '.log')} when Kaggle kept one."
        ) from error


def _refuse_sequential(recipe: Recipe) -> None:
    sequential = [m.name for m in recipe.members if m.sampling == "loss"]
    if sequential:
        raise KaggleError(
            f"Member(s) {', '.join(sequential)} of recipe {recipe.name!r} sample by the previous member's losses, so "
            "the members cannot train apart; push the whole recipe with `kagglekit kaggle push-kernel`."
        )


def fanout(
    competition: str,
    recipe: str = "gpu",
    *,
    owner: str | None = None,
    wheels_dataset: str | None = None,
    weights_dataset: str | None = None,
    data: Path | None = None,
    runs_dir: Path | None = None,
    submissions_dir: Path | None = None,
    poll_interval: float = 60.0,
    timeout: float = 12 * 3600.0,
    console: Console | None = None,
) -> FanoutResult:
    """Push one notebook per ensemble member, wait for all, download their probabilities and ensemble them here.

    The run folder `runs/<competition>/<stamp>_fanout-<recipe>/` holds the pushed notebooks (kernels/), each
    member's probabilities (members/<name>/) and the ensemble, as a local run would; the checked submission goes
    to `submissions/<competition>/`. The members' probabilities meet in the same stages as in a local run
    (`ensemble_members`, `write_and_check`): with `data` (the competition's files here) the ensemble is scored on
    the validation labels, multi-label thresholds are tuned, and the rows follow the sample submission; without it,
    the recipe-weighted mean with 0.5 thresholds.
    """
    spec = get_competition(competition)
    recipe_path = spec.recipe_path(recipe)
    parsed = load_recipe(recipe_path)
    _refuse_sequential(parsed)
    labels = labels_only(spec, locate_data(spec, data)) if data else None  # a wrong --data fails before a push
    console = console or Console()
    credentials = find_credentials()
    api = kaggle_client(credentials)
    owner = owner_of(owner, credentials)
    name = f"fanout-{parsed.name}"
    folder = Path(runs_dir or default_runs_dir()) / spec.name / f"{timestamp()}_{name}"
    config: dict[str, Any] = {"competition": spec.name, "recipe": parsed.to_dict(), "owner": owner}
    record = RunRecord(folder, config={**config, "command": shlex.join(sys.argv)})
    kernels: list[Kernel] = []
    with record.step("push"):
        for member in parsed.members:
            kernel_folder = write_kernel(
                folder / "kernels", spec.name, str(recipe_path), owner, wheels_dataset=wheels_dataset,
                weights_dataset=weights_dataset, member=member.name,
            )  # fmt: skip
            kernels.append(_push(api, credentials, kernel_folder, member.name))
            console.print(f"Pushed {member.name}: {kernels[-1].url}")
        record.metrics["kernels"] = [asdict(k) for k in kernels]
    with record.step("wait"):
        _wait(api, credentials, kernels, poll_interval, timeout, console)
        record.metrics["kernels"] = [asdict(k) for k in kernels]
    failed = [k for k in kernels if k.status != "complete"]
    if failed:
        record.status = "failed on Kaggle"
        record.save()
        raise KaggleError(
            "Notebook(s) failed on Kaggle: "
            + "; ".join(f"member {k.member} ({k.url}): {k.status}: {k.failure or 'no message'}" for k in failed)
        )
    with record.step("download"):
        outputs = [_download(api, credentials, k, folder) for k in kernels]
    members = [MemberOutput(m.name, valid, test, m.weight, m.arch) for m, (valid, test) in zip(parsed.members,
               outputs, strict=True)]  # fmt: skip
    with record.step("ensemble"):
        ensemble = ensemble_members(members, parsed, labels or spec)
        ensemble.save(folder / "ensemble")
    with record.step("submission"):
        written = write_and_check(ensemble, labels, name, submissions_dir, folder)
        record.artifact("submission", written.path)
        record.metrics["submission_check"] = written.check.to_dict()
    notes = [*ensemble.notes, *([] if labels else ["no --data: the ids were not compared with the sample submission"])]
    record.notes.extend(notes)
    record.status = "finished" if written.check.ok else "finished: submission check failed"
    record.save()
    return FanoutResult(folder, kernels, written, notes)
