"""The competition registry, in the manner of timm's model registry.

A plug-in module decorates a function that returns a `Competition`; `list_competitions` reads the registry.
Built-in plug-ins live in the top-level `competitions` package; third-party packages add theirs through the
`kagglekit.competitions` entry-point group (each entry point names a module to import).
"""

from __future__ import annotations

import importlib
import inspect
from collections.abc import Callable
from dataclasses import replace
from importlib.metadata import entry_points
from pathlib import Path

from kagglekit.competition import Competition

ENTRY_POINT_GROUP = "kagglekit.competitions"
BUILTIN_PACKAGE = "competitions"

_factories: dict[str, Callable[[], Competition]] = {}
_loaded = False


def register(factory: Callable[[], Competition]) -> Callable[[], Competition]:
    """Register a competition under the factory's name; recipes live in `recipes/<name>/` beside it."""
    _factories[factory.__name__] = factory
    return factory


def _load_plugins() -> None:
    global _loaded
    if _loaded:
        return
    _loaded = True
    importlib.import_module(BUILTIN_PACKAGE)
    for ep in entry_points(group=ENTRY_POINT_GROUP):
        importlib.import_module(ep.value)


def list_competitions() -> list[str]:
    _load_plugins()
    return sorted(_factories)


def get_competition(name: str) -> Competition:
    """The competition registered as `name` (or whose Kaggle slug is `name`)."""
    _load_plugins()
    factory = _factories.get(name)
    if factory is None:
        by_slug = {f().slug: f for f in _factories.values()}
        factory = by_slug.get(name)
    if factory is None:
        raise KeyError(f"Unknown competition {name!r}. Known: {', '.join(list_competitions())}.")
    competition = factory()
    recipes_dir = Path(inspect.getfile(factory)).parent / "recipes" / factory.__name__
    return replace(competition, recipes_dir=competition.recipes_dir or recipes_dir)
