"""Running inside a Kaggle notebook: where outputs go, the `submission.csv` Kaggle scores, and the offline recipe.

A notebook's only persistent output is `/kaggle/working` (`KAGGLEKIT_WORKING_DIR` moves it, for tests), and a code
competition scores `/kaggle/working/submission.csv`. With internet off, `pretrained = true` cannot download weights,
so the notebook runs a copy of its recipe that points at an attached weights dataset instead. Cheap to import: no
torch, no kaggle client.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
from pathlib import Path
from typing import Any

from kagglekit.files import atomic_write
from kagglekit.items import in_kaggle_notebook
from kagglekit.recipe import RecipeError, parse_recipe
from kagglekit.registry import get_competition

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

KAGGLE_WORKING = Path("/kaggle/working")
SUBMISSION_NAME = "submission.csv"  # the file a code competition scores


def working_dir() -> Path | None:
    """The notebook's output folder, or None outside a Kaggle notebook."""
    if not in_kaggle_notebook():
        return None
    return Path(os.environ.get("KAGGLEKIT_WORKING_DIR", KAGGLE_WORKING))


def default_dirs() -> tuple[Path, Path]:
    """(runs, submissions) folders: under the working folder in a notebook, so they outlive the session."""
    working = working_dir()
    if working is None:
        return Path("runs"), Path("submissions")
    return working / "runs", working / "submissions"


def publish_submission(path: Path) -> Path | None:
    """Copy a submission to `<working>/submission.csv` in a notebook (replacing the previous one, atomically, so
    Kaggle never scores a half-written file); None elsewhere."""
    working = working_dir()
    if working is None:
        return None
    return atomic_write(working / SUBMISSION_NAME, lambda tmp: shutil.copyfile(path, tmp))


def export_member(run_folder: Path, member: str, dest: Path) -> Path:
    """Copy a one-member run's probabilities to `dest/members/<member>/`, where `kagglekit kaggle fanout` fetches
    them. They come from the run's `ensemble/` folder: for one member that is its own predictions, completed with
    the training prior for test images that could not be decoded, so every test id is present."""
    source = Path(run_folder) / "ensemble"
    files = sorted([*source.glob("valid_*"), *source.glob("test_*")])
    if not files:
        raise FileNotFoundError(f"{source} holds no probabilities; did the run finish?")
    target = Path(dest) / "members" / member
    target.mkdir(parents=True, exist_ok=True)
    for file in files:
        atomic_write(target / file.name, lambda tmp, f=file: shutil.copyfile(f, tmp))
    return target


def offline_recipe(
    competition: str,
    recipe: str,
    dest: Path,
    *,
    weights: Path | None = None,
    member: str | None = None,
    text: str | None = None,
) -> Path:
    """Write the recipe a Kaggle notebook runs to `dest/<name>.toml` and return its path.

    `recipe` is a recipe name or .toml path, or only names the recipe when its `text` is given (a pushed notebook
    carries the text, so a local recipe file works on Kaggle too). With `weights` (an attached dataset folder),
    `pretrained = true` becomes that folder. With `member`, only that member is kept, with the seed it has in the
    full recipe, so it trains exactly as it would in a whole run.
    """
    spec = get_competition(competition)
    name = Path(recipe).stem
    source = text if text is not None else spec.recipe_path(recipe).read_text()
    data: dict[str, Any] = tomllib.loads(source)
    full = parse_recipe(data, name, source=f"recipe {name!r}")
    tables: list[dict[str, Any]] = data["members"]
    if member is not None:
        names = [m.name for m in full.members]
        if member not in names:
            raise RecipeError(f"recipe {name!r} has no member {member!r}; its members: {', '.join(names)}.")
        index = names.index(member)
        if full.members[index].sampling == "loss":
            raise RecipeError(
                f"member {member!r} of recipe {name!r} samples by the previous member's losses, so it cannot run "
                "on its own; run the recipe as a whole."
            )
        tables = [{**tables[index], "seed": full.member_seed(full.members[index])}]
        data["members"] = tables
    if weights is not None:
        for table in (data.get("defaults", {}), *tables):
            if table.get("pretrained") is True:
                table["pretrained"] = str(weights)
    path = Path(dest) / f"{name}.toml"
    atomic_write(path, lambda tmp: tmp.write_text(dump_toml(data)))
    return path


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)  # JSON's escapes are valid in TOML basic strings
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {_toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(f"cannot write {type(value).__name__} to TOML")


def dump_toml(data: dict[str, Any]) -> str:
    """A recipe as TOML: scalars, then tables, then arrays of tables (the shapes recipes use; no TOML writer is
    among kagglekit's dependencies)."""

    def is_tables(value: Any) -> bool:
        return isinstance(value, list) and bool(value) and all(isinstance(v, dict) for v in value)

    def body(table: dict[str, Any]) -> list[str]:
        return [f"{json.dumps(k)} = {_toml_value(v)}" for k, v in table.items()]

    lines = body({k: v for k, v in data.items() if not isinstance(v, dict) and not is_tables(v)})
    for key, value in data.items():
        if isinstance(value, dict):
            lines += ["", f"[{json.dumps(key)}]", *body(value)]
    for key, value in data.items():
        if is_tables(value):
            for table in value:
                lines += ["", f"[[{json.dumps(key)}]]", *body(table)]
    return "\n".join(lines) + "\n"
