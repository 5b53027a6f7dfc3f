"""Recipes: a TOML file that says how to split the data and which ensemble members to train.

A recipe has run-wide settings, a `[defaults]` table applied to every member, and one `[[members]]` table
per member. Unknown keys are errors, so a typo never silently falls back to a default.
"""

from __future__ import annotations

import sys
from dataclasses import asdict, dataclass, fields
from pathlib import Path
from typing import Any, Literal

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover
    import tomli as tomllib

ResizeMethod = Literal["squish", "crop", "pad"]


class RecipeError(ValueError):
    """A recipe file is invalid; the message names the file, the member and the key."""


@dataclass(frozen=True)
class Member:
    """One ensemble member: an architecture and how it is trained and predicted.

    `batch_size` is the *effective* batch size: each optimizer step sees this many images, accumulated
    over `accum` forward/backward passes of `batch_size // accum` images each.
    """

    name: str
    arch: str
    pretrained: bool = False
    size: int | tuple[int, int] = 224
    resize: ResizeMethod = "squish"
    aug: str = "default"
    epochs: int = 5
    lr: float = 2e-3
    batch_size: int = 64
    accum: int = 1
    weight: float = 1.0  # its weight in the ensemble's mean
    tasks: dict[str, float] | None = None  # task -> loss weight; None: the competition's target alone
    seed: int | None = None  # None: the recipe's seed

    def __post_init__(self) -> None:
        if self.accum < 1:
            raise RecipeError(f"member {self.name!r}: accum must be >= 1, got {self.accum}.")
        if self.batch_size % self.accum:
            raise RecipeError(
                f"member {self.name!r}: batch_size {self.batch_size} (the effective batch size) is not "
                f"divisible by accum {self.accum}; each step would see a different number of images. "
                f"Use e.g. batch_size = {self.batch_size // self.accum * self.accum or self.accum}."
            )
        if self.resize not in ("squish", "crop", "pad"):
            raise RecipeError(f"member {self.name!r}: resize must be squish, crop or pad, got {self.resize!r}.")
        if self.epochs < 1 or self.lr <= 0 or self.weight < 0:
            raise RecipeError(f"member {self.name!r}: epochs >= 1, lr > 0 and weight >= 0 are required.")

    @property
    def step_batch_size(self) -> int:
        """Images per forward/backward pass."""
        return self.batch_size // self.accum

    @property
    def image_size(self) -> tuple[int, int]:
        """(height, width)."""
        return (self.size, self.size) if isinstance(self.size, int) else tuple(self.size)


@dataclass(frozen=True)
class Recipe:
    name: str
    members: tuple[Member, ...]
    description: str = ""
    valid_pct: float = 0.2
    split: Literal["random", "stratified"] = "stratified"
    seed: int = 42
    tta: int = 4  # augmented passes averaged with the plain pass
    num_workers: int | None = None  # data-loading processes; None: fastai's default
    source: str = ""

    def member_seed(self, member: Member) -> int:
        return self.seed + self.members.index(member) if member.seed is None else member.seed

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


_MEMBER_KEYS = {f.name for f in fields(Member)}
_RECIPE_KEYS = {f.name for f in fields(Recipe)} - {"name", "members", "source"}


def _member(table: dict[str, Any], defaults: dict[str, Any], where: str) -> Member:
    merged = {**defaults, **table}
    unknown = sorted(set(merged) - _MEMBER_KEYS)
    if unknown:
        raise RecipeError(f"{where}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_MEMBER_KEYS))}.")
    for key in ("name", "arch"):
        if key not in merged:
            raise RecipeError(f"{where}: every member needs a {key!r}.")
    if isinstance(merged.get("size"), list):
        merged["size"] = tuple(merged["size"])
    try:
        return Member(**merged)
    except RecipeError as error:
        raise RecipeError(f"{where}: {error}") from None
    except TypeError as error:
        raise RecipeError(f"{where}: {error}") from None


def parse_recipe(data: dict[str, Any], name: str, source: str = "<recipe>") -> Recipe:
    data = dict(data)
    defaults = data.pop("defaults", {})
    members_data = data.pop("members", [])
    unknown = sorted(set(data) - _RECIPE_KEYS)
    if unknown:
        raise RecipeError(f"{source}: unknown key(s) {', '.join(unknown)}; allowed: {', '.join(sorted(_RECIPE_KEYS))}.")
    if not members_data:
        raise RecipeError(f"{source}: no [[members]]; a recipe needs at least one member.")
    members = tuple(_member(table, defaults, f"{source} [[members]] #{i + 1}") for i, table in enumerate(members_data))
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise RecipeError(f"{source}: member names must be unique, got {names}.")
    recipe = Recipe(name=name, members=members, source=source, **data)
    if not 0 < recipe.valid_pct < 1:
        raise RecipeError(f"{source}: valid_pct must be between 0 and 1, got {recipe.valid_pct}.")
    if recipe.split not in ("random", "stratified"):
        raise RecipeError(f"{source}: split must be 'random' or 'stratified', got {recipe.split!r}.")
    if recipe.tta < 0:
        raise RecipeError(f"{source}: tta must be >= 0, got {recipe.tta}.")
    return recipe


def load_recipe(path: Path) -> Recipe:
    path = Path(path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as error:
        raise RecipeError(f"{path}: not valid TOML ({error}).") from error
    return parse_recipe(data, name=path.stem, source=str(path))
