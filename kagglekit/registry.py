"""The competition registry, in the manner of timm's model registry.

A plug-in module decorates a function that returns a `Competition`; registering calls it once, so a broken
plug-in fails at import with a message naming the field. Built-in plug-ins live in `kagglekit.competitions`
(the repository's top-level `competitions/` folder); third-party packages add theirs through the
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
from kagglekit.errors import PluginError

ENTRY_POINT_GROUP = "kagglekit.competitions"
BUILTIN_PACKAGE = "kagglekit.competitions"

_registered: dict[str, Competition] = {}
_loaded = False


def register(factory: Callable[[], Competition]) -> Callable[[], Competition]:
    """Register the competition the factory returns under its name; its recipes live in
    `recipes/<name>/` beside the plug-in module. Raises `PluginError` when the record is invalid."""
    competition = factory()
    if not isinstance(competition, Competition):
        raise PluginError(f"plug-in {factory.__name__!r} must return a Competition, not {type(competition).__name__}.")
    recipes_dir = competition.recipes_dir or Path(inspect.getfile(factory)).parent / "recipes" / competition.name
    _registered[competition.name] = replace(competition, recipes_dir=recipes_dir)
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
    return sorted(_registered)


def get_competition(name: str) -> Competition:
    """The competition registered as `name` (or whose Kaggle slug is `name`)."""
    _load_plugins()
    found = _registered.get(name) or next((c for c in _registered.values() if c.slug == name), None)
    if found is None:
        raise PluginError(f"Unknown competition {name!r}. Known: {', '.join(list_competitions())}.")
    return found
