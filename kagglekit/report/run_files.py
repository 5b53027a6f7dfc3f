"""A run folder read back: `run.json`, each member's histories and validation probabilities, the ensemble's, the
split and the rows left out. The report and the label review are built from this and the run's data alone."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from kagglekit.competition import Competition
from kagglekit.ensemble.probabilities import Probabilities
from kagglekit.ensemble.thresholds import Thresholds
from kagglekit.errors import DataError, RecipeError
from kagglekit.pipeline.data import Data, corrected, prepare_data
from kagglekit.pipeline.members import PLAIN
from kagglekit.recipe import Recipe, parse_recipe


def lr_found(member_dir: Path) -> dict[str, float] | None:
    """The learning rate `lr = "find"` chose for each part of a member (`""` or `fold<k>`), or None."""
    found = {p.parent.name if p.parent != member_dir else "": json.loads(p.read_text())["valley"]
             for p in sorted(Path(member_dir).glob("**/lr_find.json"))}  # fmt: skip
    return found or None


def _parts(member_dir: Path) -> list[Path]:
    if (member_dir / "member.json").is_file():
        return [member_dir]
    return sorted(p.parent for p in member_dir.glob("fold*/member.json"))


@dataclass
class MemberFiles:
    """One finished member: its `member.json` per part (one, or one per fold), its validation probabilities as the
    ensemble used them (`valid`), with TTA and from the plain pass, and its row of `run.json`'s metrics."""

    name: str
    folder: Path
    saved: dict[str, dict]  # part name ("" or "fold<k>") -> member.json
    valid: Probabilities
    valid_tta: Probabilities
    valid_plain: Probabilities | None
    metrics: dict[str, Any]

    @property
    def in_ensemble(self) -> bool:
        return bool(self.metrics.get("in_ensemble", True))

    @property
    def lr_plots(self) -> dict[str, Path]:
        return {p.parent.name if p.parent != self.folder else "": p for p in sorted(self.folder.glob("**/lr_find.png"))}


def _member(folder: Path, metrics: dict[str, Any]) -> MemberFiles | None:
    parts = _parts(folder)
    if not parts or not (folder / "valid_ids.csv").is_file():
        return None  # not finished
    saved = {p.name if p != folder else "": json.loads((p / "member.json").read_text()) for p in parts}
    tta = Probabilities.load(folder, "valid")
    plain = Probabilities.load(folder / PLAIN, "valid") if (folder / PLAIN / "valid_ids.csv").is_file() else None
    used = plain if plain is not None and not metrics.get("tta_used", True) else tta
    return MemberFiles(folder.name, folder, saved, used, tta, plain, metrics)


@dataclass
class RunFiles:
    """What a run folder holds, loaded: see `load_run`."""

    folder: Path
    record: dict[str, Any]
    members: list[MemberFiles]
    ensemble_valid: Probabilities | None
    thresholds: Thresholds | None
    splits: pd.DataFrame | None  # id, is_valid: the recipe's shared hold-out split
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)  # skipped_items, undecodable_test, corrections

    @property
    def metrics(self) -> dict[str, Any]:
        return self.record.get("metrics", {})


def _table(path: Path) -> pd.DataFrame | None:
    return pd.read_csv(path, dtype=str, keep_default_na=False) if path.is_file() else None


def _record(folder: Path) -> dict[str, Any]:
    if not (folder / "run.json").is_file():
        raise DataError(f"{folder}: no run.json here; give a run folder (runs/<competition>/<stamp>_<name>).")
    return json.loads((folder / "run.json").read_text())


def load_run(folder: Path) -> RunFiles:
    """Read a run folder. Raises `DataError` when it has no run.json."""
    folder = Path(folder)
    record = _record(folder)
    names = [m["name"] for m in record.get("config", {}).get("recipe", {}).get("members", [])]
    member_metrics = record.get("metrics", {}).get("members", {})
    members = [m for n in names if (m := _member(folder / "members" / n, member_metrics.get(n, {}))) is not None]
    ensemble = folder / "ensemble"
    valid = Probabilities.load(ensemble, "valid") if (ensemble / "valid_ids.csv").is_file() else None
    thresholds = folder / "thresholds.json"
    tables = {name: t for name in ("skipped_items", "undecodable_test", "corrections_applied")
              if (t := _table(folder / f"{name}.csv")) is not None}  # fmt: skip
    splits = _table(folder / "splits.csv")
    if splits is not None:
        splits["is_valid"] = splits["is_valid"].str.lower() == "true"
    return RunFiles(
        folder, record, members, valid,
        Thresholds.from_dict(json.loads(thresholds.read_text())) if thresholds.is_file() else None, splits, tables,
    )  # fmt: skip


def run_recipe(config: dict[str, Any]) -> Recipe | None:
    """The recipe a run's `run.json` configuration recorded (None when this version cannot read it back)."""
    saved = dict(config.get("recipe") or {})
    try:
        return parse_recipe(saved, saved.pop("name", "recipe"), saved.pop("source", "<run.json>"))
    except (RecipeError, TypeError):  # a recipe of another kagglekit version
        return None


def run_data(folder: Path, data_dir: Path | None = None, competition: Competition | None = None) -> Data:
    """The run's `Data` as it trained on it: its competition and data folder (from run.json unless given), the image
    cache entries of its recipe's sizes (the ones it trained on, so nothing is decoded again), with the label
    corrections it recorded applied. Raises `DataError` when the data folder is gone."""
    from kagglekit.registry import get_competition

    folder = Path(folder)
    config = _record(folder)["config"]
    competition = competition or get_competition(config["competition"])
    data_dir = Path(data_dir or config["data_dir"])
    if not data_dir.is_dir():
        raise DataError(f"{folder}: the run's data folder {data_dir} is gone; pass --data with the competition files.")
    data = prepare_data(competition, data_dir, recipe=run_recipe(config))
    return corrected(data, config["corrections"])[0] if config.get("corrections") else data
