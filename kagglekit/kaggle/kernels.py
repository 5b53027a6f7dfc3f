"""Kaggle notebooks from the command line: push the offline notebook that trains a recipe on Kaggle's GPUs, or the
inference notebook that predicts a code competition's test set from an inference pack.

Both notebooks (notebooks/kaggle_offline.ipynb, notebooks/kaggle_inference.ipynb) install kagglekit from an attached
wheels dataset and run with internet off, as code competitions demand. Pushing writes a copy whose parameters cell
carries the competition, the recipe's text or the pack, and the datasets, next to the `kernel-metadata.json` the
client reads, which names the accelerator explicitly (`machine_shape`).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kagglekit import notebooks
from kagglekit._io import write_json
from kagglekit.errors import KaggleError
from kagglekit.kaggle.auth import Credentials, client_errors, find_credentials, kaggle_client
from kagglekit.kaggle.packs import WEIGHTS_SLUG, WHEELS_SLUG, short_slug
from kagglekit.recipe import load_recipe
from kagglekit.registry import get_competition

if TYPE_CHECKING:
    from kaggle.api.kaggle_api_extended import KaggleApi

log = logging.getLogger(__name__)

NOTEBOOK = Path(notebooks.__file__).parent / "kaggle_offline.ipynb"  # the repository's notebooks/
INFERENCE_NOTEBOOK = NOTEBOOK.with_name("kaggle_inference.ipynb")
KERNEL_METADATA = "kernel-metadata.json"
# Accelerators (kernel metadata `machine_shape`, the client's --accelerator) as Kaggle lists them, February 2026.
# A GPU is always named, so Kaggle never picks one for us; the T4 (two of them) is Kaggle's default GPU.
DEFAULT_ACCELERATOR = "NvidiaTeslaT4"
ACCELERATORS = (
    "NvidiaTeslaT4", "NvidiaTeslaT4Highmem", "NvidiaL4", "NvidiaL4X1", "NvidiaTeslaA100", "NvidiaH100",
    "NvidiaRtxPro6000", "TpuV5E8", "TpuV6E8",
)  # fmt: skip
RETIRED = {"NvidiaTeslaP100": "NvidiaTeslaT4", "TpuV38": "TpuV5E8", "Tpu1VmV38": "TpuV5E8"}
CPU = "cpu"  # no accelerator at all


def _parameter(default: str, about: str) -> Any:
    return field(default=default, metadata={"help": about})


class _Parameters:
    """A notebook's parameters cell. Each value can be overridden by the environment variable KAGGLEKIT_<NAME>, which
    is how a test runs the notebook against local folders."""

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


WHEELS_HELP = "attached wheels (owner/slug or slug) from `kagglekit kaggle pack-wheels`; '' if installed"
PIP_HELP = "extra `pip install` arguments, e.g. '--target DIR --no-deps' in tests"


@dataclass(frozen=True)
class NotebookParameters(_Parameters):
    """The offline (training) notebook's parameters."""

    competition: str = _parameter("", "kagglekit's name of the competition (`kagglekit list`), or its Kaggle slug")
    recipe: str = _parameter("gpu", "a recipe name of the competition, or a .toml path")
    recipe_toml: str = _parameter("", "the recipe's text; when set, it is run instead of RECIPE's file")
    wheels_dataset: str = _parameter(WHEELS_SLUG, WHEELS_HELP)
    weights_dataset: str = _parameter(
        WEIGHTS_SLUG, "attached timm weights from `kagglekit kaggle pack-weights`; '' when none are needed"
    )
    member: str = _parameter("", "train only this ensemble member (`kagglekit kaggle fanout`); '' for all")
    pip_args: str = _parameter("", PIP_HELP)


@dataclass(frozen=True)
class InferenceParameters(_Parameters):
    """The inference notebook's parameters."""

    pack_dataset: str = _parameter("", "attached inference pack (owner/slug or slug) from `kagglekit export --push`")
    wheels_dataset: str = _parameter(WHEELS_SLUG, WHEELS_HELP)
    time_budget_hours: str = _parameter("", "hours the prediction may take; '' for Kaggle's limit minus a margin")
    pip_args: str = _parameter("", PIP_HELP)


def machine(accelerator: str = DEFAULT_ACCELERATOR) -> dict[str, Any]:
    """The kernel metadata that asks for `accelerator` (`cpu`: none); a retired one is refused with its successor."""
    if accelerator in RETIRED:
        raise KaggleError(f"Kaggle retired the {accelerator} accelerator; use --accelerator {RETIRED[accelerator]}.")
    if accelerator.lower() == CPU:
        return {"enable_gpu": False, "enable_tpu": False}
    if accelerator not in ACCELERATORS:
        log.warning("Accelerator %s is not among those Kaggle listed (%s); sending it as given.", accelerator,
                    ", ".join(ACCELERATORS))  # fmt: skip
    tpu = accelerator.startswith("Tpu")
    return {"enable_gpu": not tpu, "enable_tpu": tpu, "machine_shape": accelerator}


def kernel_slug(competition: str, recipe: str, member: str | None = None) -> str:
    """The notebook's slug, also its title's: unique per competition, recipe and member, at most 50 characters."""
    return short_slug(" ".join(["kagglekit", competition, Path(recipe).stem, member or ""]))


def _source_ref(dataset: str, owner: str) -> str:
    return dataset if "/" in dataset else f"{owner}/{dataset}"


def _write(folder: Path, notebook: Path, parameters: _Parameters, metadata: dict[str, Any]) -> Path:
    """`folder/` with `notebook` (its parameters cell rewritten) and the `kernel-metadata.json` the client reads."""
    if not Path(notebook).is_file():
        raise KaggleError(f"The notebook {notebook} is missing; it ships with kagglekit's source checkout.")
    content = json.loads(Path(notebook).read_text())
    cells = [c for c in content["cells"] if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise KaggleError(f"{notebook} needs exactly one code cell tagged 'parameters', found {len(cells)}.")
    cells[0]["source"] = parameters.cell()
    write_json(folder / notebook.name, content)
    write_json(folder / KERNEL_METADATA, {"code_file": notebook.name, **metadata})
    return folder


def _metadata(owner: str, slug: str, datasets: list[str], competition: str, accelerator: str) -> dict[str, Any]:
    """A private notebook with internet off (as code competitions run it) on `accelerator`."""
    return {
        "id": f"{owner}/{slug}",
        "title": slug.replace("-", " "),  # slugifies back to the id, as the client wants
        "language": "python",
        "kernel_type": "notebook",
        "is_private": True,
        **machine(accelerator),
        "enable_internet": False,
        "dataset_sources": datasets,
        "competition_sources": [competition],
        "kernel_sources": [],
        "model_sources": [],
    }


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
    accelerator: str = DEFAULT_ACCELERATOR,
) -> Path:
    """Write `dest/<slug>/` with the offline notebook (parameters filled in) and its `kernel-metadata.json`; return it.

    Datasets default to the packs' default slugs under `owner`; weights only when a member has `pretrained =
    true`. The metadata asks for a private notebook on `accelerator` with internet off, as code competitions run it.
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
    parameters = NotebookParameters(
        competition=spec.name, recipe=parsed.name, recipe_toml=recipe_path.read_text(), wheels_dataset=wheels,
        weights_dataset=weights or "", member=member or "",
    )  # fmt: skip
    datasets = [wheels, *([weights] if weights else [])]
    return _write(Path(dest) / slug, notebook, parameters, _metadata(owner, slug, datasets, spec.slug, accelerator))


def write_inference_kernel(
    dest: Path,
    competition: str,
    pack_dataset: str,
    owner: str,
    *,
    wheels_dataset: str | None = None,
    time_budget: float | None = None,
    accelerator: str = DEFAULT_ACCELERATOR,
) -> Path:
    """Write `dest/<slug>/` with the inference notebook, which predicts the competition's (hidden) test set with the
    attached pack `pack_dataset` (from `kagglekit export --push`), and its `kernel-metadata.json`; return it.

    One notebook per competition (`kagglekit-<competition>-inference`): pushing another pack saves a new version."""
    spec = get_competition(competition)
    pack, wheels = _source_ref(pack_dataset, owner), _source_ref(wheels_dataset or WHEELS_SLUG, owner)
    slug = kernel_slug(spec.name, "inference")
    parameters = InferenceParameters(pack_dataset=pack, wheels_dataset=wheels,
                                     time_budget_hours="" if time_budget is None else str(time_budget))  # fmt: skip
    metadata = _metadata(owner, slug, [wheels, pack], spec.slug, accelerator)
    return _write(Path(dest) / slug, INFERENCE_NOTEBOOK, parameters, metadata)


@dataclass
class Kernel:
    """A pushed notebook and what Kaggle last said of its session."""

    member: str | None
    ref: str  # owner/slug
    url: str
    version: int | None
    status: str = "queued"
    failure: str | None = None


def push_notebook(api: KaggleApi, credentials: Credentials, folder: Path, member: str | None = None) -> Kernel:
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
    return push_notebook(kaggle_client(credentials), credentials, Path(folder))
