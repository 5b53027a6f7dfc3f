"""Offline packs: what a Kaggle notebook with internet off needs, as private Kaggle datasets to attach to it.

A code competition runs notebooks with internet off, so packages and weights must come from attached datasets:
the wheels of kagglekit and of the few dependencies Kaggle's image lacks (for the image's Python and platform, not
this machine's), and timm weights as `<arch>.safetensors`, the name `kagglekit.train.weights.weights_file` looks for.
Each pack is a folder with a `dataset-metadata.json`, pushed with the official client's `dataset_create_new`.
"""

from __future__ import annotations

import hashlib
import importlib.util
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

from kagglekit._io import atomic_write, write_json
from kagglekit.errors import CredentialsError, KaggleError
from kagglekit.kaggle.auth import Credentials, client_errors, find_credentials, kaggle_client
from kagglekit.train.weights import timm_overlay

if TYPE_CHECKING:
    import torch.nn

    from kagglekit.predict.pack import InferencePack

DATASET_METADATA = "dataset-metadata.json"
WHEELS_SLUG = "kagglekit-wheels"
WEIGHTS_SLUG = "kagglekit-weights"
# What kagglekit needs beyond Kaggle's image. The image's published package list (Kaggle/docker-python,
# installed_cpu_packages.txt) has torch, torchvision, timm, fastai, safetensors, typer, rich, pandas, scikit-learn,
# pillow, kaggle, six and pydicom 3, but no pylibjpeg. pydicom is packed too because older images shipped pydicom 2
# and kagglekit needs 3. pip keeps an installed package that satisfies kagglekit, so a wheel here never replaces
# the image's own; that is also why the image's CUDA build of torch is safe.
KAGGLE_LACKS = ("pylibjpeg", "pylibjpeg-libjpeg", "pylibjpeg-openjpeg", "pydicom")
# The image's Python is not pinned anywhere public: it follows Colab's base image (3.10 in 2023, 3.11 since,
# 3.12 on newer Colab images). Wheels for both of the recent ones cost a few MB; pip picks the matching one.
KAGGLE_PYTHONS = ("3.11", "3.12")
# x86_64 Linux with glibc 2.35 (Ubuntu 22.04): manylinux2014 also admits manylinux1/2010 wheels; 2_28 adds the
# newer ones that some binary packages publish exclusively.
KAGGLE_PLATFORMS = ("manylinux2014_x86_64", "manylinux_2_28_x86_64")
NEVER_PACKED = {"torch", "torchvision", "torchaudio"}  # the image's CUDA builds must stay
_BUILD_IGNORED = (".git", ".venv", "venv", "build", "dist", "*.egg-info", "__pycache__", ".*_cache")
_CHECKOUT_OUTPUTS = {"runs", "data", "submissions", "packs"}  # a checkout's own outputs, skipped at its top level
_DATASET_SLUG = re.compile(r"^[a-z0-9][a-z0-9-]{4,48}[a-z0-9]$")
SLUG_MAX = 50  # characters in a Kaggle dataset or notebook slug


def owner_of(owner: str | None, credentials: Credentials | None = None) -> str:
    """The Kaggle user that owns what kagglekit creates: `owner`, else the username of the credentials."""
    if owner:
        return owner
    try:
        credentials = credentials or find_credentials()
    except CredentialsError as error:
        raise KaggleError(
            f"Kaggle ids need your username: pass it with --owner, or set up credentials. {error}"
        ) from None
    if not credentials.username:
        raise KaggleError(
            f"The credentials from {credentials.source} do not name a Kaggle user; pass your username with --owner."
        )
    return credentials.username


def short_slug(text: str, limit: int = SLUG_MAX) -> str:
    """Kaggle's slug of a title (python-slugify, as the client checks it, for ASCII titles), at most `limit`
    characters: a longer one keeps its start and ends with a hash of the whole, so it stays unique."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    if len(slug) > limit:
        slug = f"{slug[: limit - 9].rstrip('-')}-{hashlib.sha1(slug.encode()).hexdigest()[:8]}"
    return slug


def dataset_ref(dataset: str | None, default_slug: str) -> str:
    """`owner/slug` of a dataset given as `owner/slug`, as a slug, or not at all (the default slug); the owner
    defaults to the credentials' user."""
    given_owner, _, slug = (dataset or default_slug).rpartition("/")
    ref = f"{given_owner or owner_of(None)}/{slug}"
    if not _DATASET_SLUG.match(slug):
        raise KaggleError(f"Dataset slug {slug!r} must be 6 to 50 lowercase letters, digits and dashes.")
    return ref


@dataclass
class Pack:
    """A folder ready to become a private Kaggle dataset."""

    folder: Path
    ref: str  # owner/slug
    files: list[Path]
    metadata: Path


def write_dataset_metadata(folder: Path, ref: str, title: str, description: str) -> Path:
    """`dataset-metadata.json` as `kaggle datasets create` reads it. The licence is "other" (specified in the
    description): a pack mixes its sources' licences."""
    if not 6 <= len(title) <= 50:
        raise KaggleError(f"Dataset title {title!r} must be 6 to 50 characters long.")
    metadata = {"title": title, "id": ref, "licenses": [{"name": "other"}], "description": description}
    return write_json(Path(folder) / DATASET_METADATA, metadata)


def push_dataset(pack: Pack) -> str:
    """Create the pack's private dataset on Kaggle and return its URL."""
    credentials = find_credentials()
    api = kaggle_client(credentials)
    with client_errors(f"create dataset {pack.ref}", credentials):
        response = api.dataset_create_new(str(pack.folder), public=False, quiet=True, dir_mode="skip")
    if response.error:
        raise KaggleError(
            f"Kaggle did not create dataset {pack.ref}: {response.error} To update an existing dataset, run "
            f"`kaggle datasets version -p {pack.folder} -m 'new files'`."
        )
    return response.url or f"https://www.kaggle.com/datasets/{pack.ref}"


# --- wheels ---


def _pip(args: Sequence[str]) -> None:
    """This interpreter's pip; its output is shown only when it fails."""
    done = subprocess.run(
        [sys.executable, "-m", "pip", "--disable-pip-version-check", *args], capture_output=True, text=True
    )
    if done.returncode:
        raise KaggleError(f"`pip {shlex.join(args)}` failed:\n{(done.stderr or done.stdout)[-3000:]}")


def source_checkout() -> Path:
    """The source checkout kagglekit runs from (pack-wheels builds kagglekit's own wheel from it)."""
    root = Path(__file__).resolve().parents[2]
    if not (root / "pyproject.toml").is_file():
        raise KaggleError(
            f"kagglekit in {root} is not a source checkout, so its wheel cannot be built; pass --source with a "
            "clone of kagglekit."
        )
    return root


def build_kagglekit_wheel(source: Path, dest: Path) -> Path:
    """`pip wheel --no-deps` of a copy of `source`, so setuptools leaves no build/ folder behind in the checkout
    (a stale one can slip deleted modules into later wheels). Offline when setuptools is installed here."""
    offline = ["--no-build-isolation", "--no-index"] if importlib.util.find_spec("setuptools") else []
    with tempfile.TemporaryDirectory() as tmp:
        copy = Path(tmp) / "kagglekit"
        patterns = shutil.ignore_patterns(*_BUILD_IGNORED)

        def ignored(folder: str, names: list[str]) -> set[str]:
            outputs = _CHECKOUT_OUTPUTS.intersection(names) if Path(folder) == Path(source) else set()
            return set(patterns(folder, names)) | outputs

        shutil.copytree(source, copy, ignore=ignored)
        _pip(["wheel", "--no-deps", *offline, "--wheel-dir", str(dest), str(copy)])
    return max(Path(dest).glob("kagglekit-*.whl"), key=lambda p: p.stat().st_mtime)


def pack_wheels(
    dest: Path,
    dataset: str | None = None,
    *,
    packages: Sequence[str] = KAGGLE_LACKS,
    python_versions: Sequence[str] = KAGGLE_PYTHONS,
    platforms: Sequence[str] = KAGGLE_PLATFORMS,
    source: Path | None = None,
) -> Pack:
    """Wheels of kagglekit and of `packages` for Kaggle's image, with the dataset metadata, in `dest`.

    In the notebook, `pip install --no-index --find-links <dataset folder> kagglekit` installs kagglekit and what
    the image lacks, and keeps everything the image has.
    """
    if not packages:
        raise KaggleError("Name at least one package to pack besides kagglekit.")
    refused = NEVER_PACKED & {re.split(r"[<>=!~\[; ]", p, maxsplit=1)[0].lower() for p in packages}
    if refused:
        raise KaggleError(f"Not packing {', '.join(sorted(refused))}: the Kaggle image's own CUDA build must stay.")
    ref = dataset_ref(dataset, WHEELS_SLUG)
    dest = Path(dest)
    dest.mkdir(parents=True, exist_ok=True)
    platform_args = [arg for platform in platforms for arg in ("--platform", platform)]
    for version in python_versions:
        _pip([
            "download", "--only-binary=:all:", "--no-deps", "--implementation", "cp", "--python-version", version,
            *platform_args, "--dest", str(dest), *packages,
        ])  # fmt: skip
    wheel = build_kagglekit_wheel(source or source_checkout(), dest)
    files = sorted(dest.glob("*.whl"))
    description = (
        f"Wheels for running kagglekit offline in a Kaggle notebook: {wheel.name} and what Kaggle's image lacks "
        f"(for Python {', '.join(python_versions)}). Each wheel keeps its own licence. Install with "
        f"`pip install --no-index --find-links /kaggle/input/{ref.split('/')[1]} kagglekit`."
    )
    metadata = write_dataset_metadata(dest, ref, "kagglekit wheels", description)
    return Pack(dest, ref, files, metadata)


def inference_dataset(pack: InferencePack, dataset: str | None = None) -> Pack:
    """The exported pack's folder as a dataset to push (`dataset`: OWNER/SLUG or SLUG; default
    `kagglekit-<competition>-<run>` under the credentials' user), with its `dataset-metadata.json`."""
    run = str(pack.source.get("run") or "pack")
    ref = dataset_ref(dataset, short_slug(f"kagglekit {pack.competition} {run}"))
    files = sorted(
        p for p in pack.folder.iterdir() if p.suffix in (".json", ".safetensors") and p.name != DATASET_METADATA
    )
    description = (
        f"kagglekit inference pack of run {run} for {pack.competition}: {len(pack.members)} member(s), weights as "
        f"safetensors and JSON only. Predict with `kagglekit predict /kaggle/input/{ref.split('/')[1]}` or the "
        "kagglekit inference notebook (`kagglekit kaggle push-kernel COMPETITION --inference OWNER/SLUG`)."
    )
    title = f"kagglekit {pack.competition} {run}"[:50].strip()
    return Pack(pack.folder, ref, files, write_dataset_metadata(pack.folder, ref, title, description))


# --- weights ---


def cached_weights(arch: str) -> Path:
    """timm's pretrained file for `arch` in this machine's caches (Hugging Face hub, then torch hub); never
    downloads, so packing works offline and says what is missing."""
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(arch)
    except RuntimeError as error:  # an unknown pretrained tag
        raise KaggleError(str(error)) from None
    if cfg is None:
        raise KaggleError(f"timm has no pretrained weights for {arch!r}.")
    if cfg.hf_hub_id:
        from huggingface_hub import try_to_load_from_cache

        repo, _, revision = cfg.hf_hub_id.partition("@")
        for name in dict.fromkeys(filter(None, (cfg.hf_hub_filename, "model.safetensors", "pytorch_model.bin"))):
            found = try_to_load_from_cache(repo, name, revision=revision or None)
            if isinstance(found, str):
                return Path(found)
    if cfg.url:
        import torch.hub

        found = Path(torch.hub.get_dir()) / "checkpoints" / Path(urlsplit(cfg.url).path).name
        if found.is_file():
            return found
    raise KaggleError(
        f"The weights of {arch} are not in this machine's timm caches. On a machine with internet run "
        f"`python -c \"import timm; timm.create_model('{arch}', pretrained=True)\"` first, or pass the weights "
        "file with --from."
    )


def load_weights(arch: str, file: Path) -> torch.nn.Module:
    """`arch` with the weights in `file`, loaded by timm as a training run loads them (so a bad file fails here)."""
    import timm

    try:
        return timm.create_model(arch, pretrained=True, pretrained_cfg_overlay=timm_overlay(file))
    except (RuntimeError, KeyError, ValueError, OSError) as error:
        raise KaggleError(f"{file} does not hold {arch} weights that timm can load: {error}") from error


def pack_weights(
    archs: Sequence[str], dest: Path, dataset: str | None = None, *, files: Sequence[Path] | None = None
) -> Pack:
    """Each arch's timm weights as `<arch>.safetensors` plus `<arch>.json` (its pretrained config: mean, std,
    input size, classes), from `files` (one per arch) or else this machine's timm caches."""
    import timm
    from safetensors.torch import save_file

    if files and len(files) != len(archs):
        raise KaggleError(f"Got {len(files)} --from file(s) for {len(archs)} architecture(s); give one per arch.")
    unknown = [a for a in archs if "/" in a or not timm.is_model(a)]
    if unknown:
        raise KaggleError(f"timm has no architecture {', '.join(unknown)} (name them as in timm.list_models()).")
    ref = dataset_ref(dataset, WEIGHTS_SLUG)
    dest = Path(dest)
    written = []
    for arch, given in zip(archs, files or [None] * len(archs), strict=True):
        source = Path(given) if given else cached_weights(arch)
        model = load_weights(arch, source)
        state = {k: v.detach().cpu().contiguous().clone() for k, v in model.state_dict().items()}  # no shared storage
        path = atomic_write(dest / f"{arch}.safetensors", lambda tmp, s=state: save_file(s, str(tmp)))
        cfg: dict[str, Any] = {k: v for k, v in model.pretrained_cfg.items() if k not in ("file", "state_dict")}
        write_json(dest / f"{arch}.json", {"arch": arch, "from": source.name, "pretrained_cfg": cfg})
        written += [path, dest / f"{arch}.json"]
    description = (
        f"timm weights for kagglekit recipes used offline: {', '.join(archs)}. Point a recipe's `pretrained` at "
        "this folder. Each model keeps its own licence (see `license` in its .json)."
    )
    metadata = write_dataset_metadata(dest, ref, "kagglekit weights", description)
    return Pack(dest, ref, written, metadata)
