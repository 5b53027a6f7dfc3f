"""Lazy re-exports for package `__init__` files: a name's module is imported on first use.

Importing torch, fastai, scikit-learn or pandas takes seconds; `kagglekit --help`, `list` and `check` need none
of them, and `import kagglekit` in a notebook should not pay for what it does not use.
"""

from __future__ import annotations

import importlib.util
import sys
from collections.abc import Callable
from importlib import import_module
from types import ModuleType
from typing import Any


def attach(package: str, exports: dict[str, str]) -> tuple[Callable[[str], Any], Callable[[], list[str]], list[str]]:
    """`(__getattr__, __dir__, __all__)` for `package`, whose public `name` lives in module `exports[name]`
    (relative to the package, e.g. ".items")."""

    def __getattr__(name: str) -> Any:
        if name not in exports:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        return getattr(import_module(exports[name], package), name)

    def __dir__() -> list[str]:
        return sorted(exports)

    return __getattr__, __dir__, sorted(exports)


def lazy_import(name: str) -> ModuleType:
    """Module `name`, executed only when one of its attributes is first used (the standard library's recipe,
    https://docs.python.org/3/library/importlib.html#implementing-lazy-imports).

    For modules only some commands need, e.g. numpy and Pillow in the plug-ins' sample generators: registering the
    plug-ins must stay cheap, because `kagglekit list` and `check` do it on every call. A module already imported
    is returned as it is.
    """
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.find_spec(name)
    spec.loader = importlib.util.LazyLoader(spec.loader)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module
    parent, _, child = name.rpartition(".")
    if parent:  # as the import system does, so that `import PIL.Image` elsewhere finds `PIL.Image` bound
        setattr(sys.modules[parent], child, module)
    spec.loader.exec_module(module)
    return module
