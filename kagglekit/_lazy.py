"""Lazy re-exports for package `__init__` files: a name's module is imported on first use.

Importing torch, fastai, scikit-learn or pandas takes seconds; `kagglekit --help`, `list` and `check` need none
of them, and `import kagglekit` in a notebook should not pay for what it does not use.
"""

from __future__ import annotations

from collections.abc import Callable
from importlib import import_module
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
