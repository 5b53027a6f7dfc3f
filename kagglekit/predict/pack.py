"""Inference packs: everything a finished run needs to turn test images into its submission, with no training code,
no training data and no pickles.

A pack is one flat folder (Kaggle datasets keep no sub-folders): `pack.json` plus, for every model of every member
the run's ensemble used, `<part>.json` (its `member.json`: architecture, heads and vocabularies, input channels,
image size and resize method, normalisation, image cache settings) and `<part>.safetensors` (its final weights).
`pack.json` holds what the ensemble stage used: each member's weight as applied (tuned ones included), the tuned
thresholds, the training class shares that undecodable test images are predicted with, the TTA setting, the image
cache settings the run's images were prepared with (so new images are prepared the same way), the competition and
the kagglekit version. `load_pack` reads a pack, or a finished run folder as if it had been exported.
"""

from __future__ import annotations

import json
import re
import shutil
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from kagglekit import __version__
from kagglekit._io import atomic_write, utc_now, write_json
from kagglekit.competition import Competition
from kagglekit.data.cache import CacheSpec
from kagglekit.data.images import input_channels
from kagglekit.ensemble.thresholds import Thresholds
from kagglekit.errors import DataError
from kagglekit.recipe import AUTO, AUTO_TTA_PASSES
from kagglekit.registry import get_competition

PACK_FILE = "pack.json"
PACK_FORMAT = 1
_FILE_NAME = re.compile(r"[A-Za-z0-9._-]+")


@dataclass(frozen=True)
class Part:
    """One trained model of a member: its description (`member.json`) and its weights."""

    description: Path
    weights: Path


@dataclass
class PackMember:
    """An ensemble member as the run's ensemble used it: its weight there, and its models (one, or one per fold)."""

    name: str
    arch: str
    weight: float
    parts: list[Part]
    tta_used: bool = True  # whether the run predicted it with TTA (`tta = "auto"` keeps TTA only where it helped)


@dataclass
class InferencePack:
    """What `predict_submission` needs from a run; see the module docstring. `shares` maps each task to its training
    class shares (the prior), `cache` the image cache settings the run's images were prepared with."""

    folder: Path
    competition: str
    tta: int
    members: list[PackMember]
    tuned_weights: bool
    thresholds: Thresholds | None
    shares: dict[str, np.ndarray]
    vocab: dict[str, list[str]]
    cache: CacheSpec
    source: dict[str, Any]  # the run it came from, when, and which kagglekit made it

    @property
    def weights(self) -> list[float]:
        return [m.weight for m in self.members]

    def spec(self) -> Competition:
        """The competition, with the DICOM frames the run decoded its images with."""
        return replace(get_competition(self.competition), dicom_frames=self.cache.frames)

    def to_dict(self) -> dict[str, Any]:
        """`pack.json`: parts are named by their file stem in the pack folder."""
        competition = get_competition(self.competition)
        return {
            "format": PACK_FORMAT,
            "kagglekit_version": self.source.get("kagglekit_version", __version__),
            "created": self.source.get("created", utc_now()),
            "competition": {"name": competition.name, "slug": competition.slug},
            "source": {k: v for k, v in self.source.items() if k not in ("kagglekit_version", "created")},
            "tta": self.tta,
            "images": {"kind": competition.images, **self.cache.to_dict()},
            "vocab": self.vocab,
            "members": [
                {
                    "name": m.name,
                    "arch": m.arch,
                    "weight": m.weight,
                    "parts": [p.weights.stem for p in m.parts],
                    "tta_used": m.tta_used,
                }
                for m in self.members
            ],
            "tuned_weights": self.tuned_weights,
            "thresholds": self.thresholds.to_dict() if self.thresholds is not None else None,
            "prior": {task: np.asarray(share).tolist() for task, share in self.shares.items()},
        }


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        return json.loads(Path(path).read_text())
    except FileNotFoundError:
        raise DataError(f"{path} is missing: {what}.") from None
    except (OSError, ValueError) as error:
        raise DataError(f"{path} cannot be read ({error}): {what}.") from None


def member_parts(member_dir: Path) -> list[Path]:
    """The trained models of a run's member folder: itself, or its `fold<k>` folders (k-fold members)."""
    if (member_dir / "member.json").is_file():
        return [member_dir]
    folds = sorted((p.parent for p in member_dir.glob("fold*/member.json")), key=lambda p: int(p.name[4:]))
    if not folds:
        raise DataError(f"{member_dir} has no member.json (nor fold folders with one): not a finished member.")
    return folds


def _cache_spec(members: list[PackMember], competition: Competition) -> CacheSpec:
    """The image cache settings every packed model was trained with (`image_cache` in its member.json: one run
    prepares all its images alike); a model trained on the image files themselves saw them decoded at full size."""
    files = CacheSpec(None, input_channels(competition), competition.dicom_frames)
    recorded = [_read_json(p.description, "the member's description").get("image_cache") for m in members
                for p in m.parts]  # fmt: skip
    specs = {CacheSpec.from_dict(r) if r else files for r in recorded}
    if len(specs) > 1:
        tags = ", ".join(sorted(spec.tag for spec in specs))
        raise DataError(f"The packed members were trained on images cached in different ways ({tags}); a pack "
                        "prepares its images one way.")  # fmt: skip
    return specs.pop() if specs else files


def _from_run(run_dir: Path) -> InferencePack:
    """A finished run read as a pack: its members' folders, its ensemble's `ensemble/ensemble.json`, its record."""
    record = _read_json(run_dir / "run.json", "not a run folder (nor a pack: no pack.json either)")
    if not str(record.get("status", "")).startswith("finished"):
        raise DataError(f"Run {run_dir} has not finished (status: {record.get('status')}); finish it before export.")
    ensemble = _read_json(run_dir / "ensemble" / "ensemble.json", "the run's ensemble was not recorded")
    if ensemble.get("prior") is None:
        raise DataError(f"Run {run_dir} has no training labels at hand (a fan-out run): its members cannot be packed.")
    recipe = record["config"]["recipe"]
    archs = {m["name"]: m["arch"] for m in recipe["members"]}
    members = []
    for name, weight in ensemble["weights"].items():
        if weight > 0:  # a member the ensemble gave no weight (or left out) is not needed to predict
            parts = [Part(p / "member.json", p / "model.safetensors") for p in member_parts(run_dir / "members" / name)]
            used = record.get("metrics", {}).get("members", {}).get(name, {}).get("tta_used", True)
            members.append(PackMember(name, archs.get(name, ""), float(weight), parts, bool(used)))
    competition = get_competition(record["config"]["competition"])
    tta = AUTO_TTA_PASSES if recipe["tta"] == AUTO else int(recipe["tta"])  # auto: per member, `tta_used`
    return InferencePack(
        folder=run_dir, competition=competition.name, tta=tta, members=members,
        tuned_weights=bool(ensemble["tuned_weights"]),
        thresholds=Thresholds.from_dict(ensemble["thresholds"]) if ensemble["thresholds"] else None,
        shares={task: np.asarray(share, dtype=np.float32) for task, share in ensemble["prior"].items()},
        vocab=_read_json(run_dir / "vocab.json", "the run's classes were not recorded"),
        cache=_cache_spec(members, competition),
        source={"run": run_dir.name, "config_key": record.get("config_key"), "recipe": recipe.get("name")},
    )  # fmt: skip


def _from_pack(folder: Path) -> InferencePack:
    data = _read_json(folder / PACK_FILE, "not an inference pack")
    if data.get("format") != PACK_FORMAT:
        raise DataError(
            f"{folder / PACK_FILE} has pack format {data.get('format')}; this kagglekit ({__version__}) reads format "
            f"{PACK_FORMAT}. Install the kagglekit version that made it ({data.get('kagglekit_version')})."
        )
    members = [
        PackMember(m["name"], m["arch"], float(m["weight"]),
                   [Part(folder / f"{stem}.json", folder / f"{stem}.safetensors") for stem in m["parts"]],
                   m.get("tta_used", True))
        for m in data["members"]
    ]  # fmt: skip
    missing = [str(f) for m in members for p in m.parts for f in (p.description, p.weights) if not f.is_file()]
    if missing:
        raise DataError(f"Inference pack {folder} is incomplete: {', '.join(missing[:3])} missing. Export it again.")
    source = {**data["source"], "kagglekit_version": data["kagglekit_version"], "created": data["created"]}
    return InferencePack(
        folder=folder, competition=data["competition"]["name"], tta=int(data["tta"]), members=members,
        tuned_weights=bool(data["tuned_weights"]),
        thresholds=Thresholds.from_dict(data["thresholds"]) if data["thresholds"] else None,
        shares={task: np.asarray(share, dtype=np.float32) for task, share in data["prior"].items()},
        vocab=data["vocab"], cache=CacheSpec.from_dict(data["images"]), source=source,
    )  # fmt: skip


def load_pack(path: Path) -> InferencePack:
    """An inference pack from its folder (or the one folder below it that holds `pack.json`, as a dataset may be
    mounted), or a finished run folder read as one. Raises `DataError` naming what is missing."""
    path = Path(path)
    if not path.is_dir():
        raise DataError(f"{path}: no such folder (expected an inference pack or a run folder).")
    if (path / PACK_FILE).is_file():
        return _from_pack(path)
    if (path / "run.json").is_file():
        return _from_run(path)
    nested = sorted(path.glob(f"*/{PACK_FILE}")) + sorted(path.glob(f"*/*/{PACK_FILE}"))
    if len(nested) == 1:
        return _from_pack(nested[0].parent)
    found = f"; it holds {len(nested)} packs, name one: {', '.join(str(p.parent) for p in nested)}" if nested else ""
    raise DataError(f"{path} is neither an inference pack (no {PACK_FILE}) nor a run folder (no run.json){found}.")


def _part_stem(member: str, part: Path, parts: int) -> str:
    if not _FILE_NAME.fullmatch(member):
        raise DataError(f"Member name {member!r} cannot name a file in a pack; use letters, digits, '.', '_' or '-'.")
    return member if parts == 1 else f"{member}__{part.name}"


def export_pack(run_dir: Path, dest: Path) -> InferencePack:
    """Write the inference pack of the finished run `run_dir` into `dest` (new or empty) and return it.

    Only the members the ensemble used are packed, each with the weight it had there. Nothing in `dest` is ever
    replaced: a folder that already holds files is refused.
    """
    pack = _from_run(Path(run_dir))
    dest = Path(dest)
    if dest.exists() and (not dest.is_dir() or any(dest.iterdir())):
        raise DataError(f"{dest} already exists and is not an empty folder; export into a new folder.")
    dest.mkdir(parents=True, exist_ok=True)
    members = []
    for member in pack.members:
        parts = []
        for part in member.parts:
            stem = _part_stem(member.name, part.description.parent, len(member.parts))
            copied = Part(dest / f"{stem}.json", dest / f"{stem}.safetensors")
            for source, target in ((part.description, copied.description), (part.weights, copied.weights)):
                atomic_write(target, lambda tmp, s=source: shutil.copyfile(s, tmp))
            parts.append(copied)
        members.append(replace(member, parts=parts))
    pack.members, pack.folder = members, dest
    pack.source = {**pack.source, "kagglekit_version": __version__, "created": utc_now()}
    write_json(dest / PACK_FILE, pack.to_dict())
    return pack
