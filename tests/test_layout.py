"""The shape of the code: no import cycles, modules a reader can take in, a notebook API that loads nothing heavy."""

from __future__ import annotations

import ast
import subprocess
import sys
from graphlib import CycleError, TopologicalSorter
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1] / "kagglekit"


def _module(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path) -> set[str]:
    """kagglekit modules imported when `path` is imported (module level, outside `if TYPE_CHECKING`)."""
    found = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("kagglekit"):
            for alias in node.names:  # `from package import submodule` depends on the submodule
                submodule = f"{node.module}.{alias.name}"
                found.add(submodule if (PACKAGE.parent / submodule.replace(".", "/")).exists() or
                          (PACKAGE.parent / (submodule.replace(".", "/") + ".py")).exists() else node.module)  # fmt: skip
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("kagglekit")}
    return found - {_module(path)}


def test_no_import_cycles():
    graph = {_module(p): _imports(p) for p in PACKAGE.rglob("*.py")}
    try:
        tuple(TopologicalSorter(graph).static_order())
    except CycleError as error:
        raise AssertionError(f"import cycle: {' -> '.join(error.args[1])}") from None


def test_modules_stay_readable():
    long = {str(p.relative_to(PACKAGE)): n for p in PACKAGE.rglob("*.py") if (n := p.read_text().count("\n")) > 400}
    assert long == {}


def test_import_kagglekit_loads_nothing_heavy():
    code = "import sys, kagglekit; kagglekit.get_competition; print(sorted({'torch', 'fastai', 'pandas', 'sklearn', 'pydicom'} & set(sys.modules)))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[]"
