"""The recipe a Kaggle notebook runs with internet off: `pretrained = true` cannot download weights there, so the
notebook runs a copy of its recipe that points at an attached weights dataset instead."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from kagglekit._io import atomic_write
from kagglekit.errors import RecipeError
from kagglekit.recipe import dump_toml, parse_recipe, tomllib
from kagglekit.registry import get_competition


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
