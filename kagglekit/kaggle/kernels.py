"""Kaggle notebooks from the command line: push the offline notebook to run a recipe on Kaggle's GPUs.

The notebook (notebooks/kaggle_offline.ipynb) installs kagglekit from an attached wheels dataset and runs with
internet off, as code competitions demand. Pushing writes a copy whose parameters cell carries the competition, the
recipe's text and the datasets, next to the `kernel-metadata.json` the client reads.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import TYPE_CHECKING, Any

from kagglekit import notebooks
from kagglekit._io import write_json
from kagglekit.errors import KaggleError
from kagglekit.kaggle.auth import Credentials, client_errors, find_credentials, kaggle_client
from kagglekit.kaggle.packs import WEIGHTS_SLUG, WHEELS_SLUG
from kagglekit.recipe import load_recipe
from kagglekit.registry import get_competition

if TYPE_CHECKING:
    from kaggle.api.kaggle_api_extended import KaggleApi

NOTEBOOK = Path(notebooks.__file__).parent / "kaggle_offline.ipynb"  # the repository's notebooks/
KERNEL_METADATA = "kernel-metadata.json"
SLUG_MAX = 50


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
