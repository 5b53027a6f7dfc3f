"""Quick commands start quickly and quietly; the GPU check is ready to run on a machine with a GPU."""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
HEAVY = {"torch", "fastai", "pandas", "sklearn", "pydicom"}


def _modules_after(code: str) -> set[str]:
    done = subprocess.run([sys.executable, "-c", f"{code}\nimport sys; print(' '.join(sys.modules))"],
                          capture_output=True, text=True, check=True)  # fmt: skip
    return set(done.stdout.split())


def test_plugins_register_and_the_cli_loads_without_heavy_libraries():
    loaded = _modules_after("import kagglekit, kagglekit.cli; kagglekit.list_competitions()")
    assert not HEAVY & loaded, sorted(HEAVY & loaded)


QUICK = {"--help": ["--help"], "list": ["list"], "usage error": ["run", "no-such-competition"],
         "check": ["check", "{file}", "--competition", "paddy"]}  # fmt: skip


@pytest.mark.parametrize("command", QUICK)
def test_quick_commands_import_no_heavy_library_and_print_no_warning(command, tmp_path):
    """Not even numpy or Pillow, which the plug-ins' sample generators import lazily (a module the standard library
    created for a lazy import but never executed does not count)."""
    submission = tmp_path / "submission.csv"
    submission.write_text("image_id,label\n100001.jpg,blast\n100002.jpg,normal\n")
    arguments = [a.format(file=submission) for a in QUICK[command]]
    heavy = sorted(HEAVY | {"numpy", "PIL.Image"})
    code = ("import atexit, runpy, sys\n"
            f"atexit.register(lambda: print('LOADED', *[m for m in {heavy!r} if m in sys.modules and "
            "type(sys.modules[m]).__name__ != '_LazyModule'], file=sys.stderr))\n"
            f"sys.argv = ['kagglekit', *{arguments!r}]\nrunpy.run_module('kagglekit', run_name='__main__')")  # fmt: skip
    done = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True)
    assert done.returncode in (0, 2), done.stderr
    (loaded,) = [line for line in done.stderr.splitlines() if line.startswith("LOADED")]
    assert loaded == "LOADED"
    assert "Warning" not in done.stderr.replace(loaded, "")
    if command == "check":
        assert "passed the submission checks" in done.stdout


def test_modules_the_plugins_import_lazily_work_for_everyone_else():
    """After the plug-ins register, numpy and Pillow are still unexecuted; whoever uses them next (matplotlib's
    `PIL.Image.open`, pandas) gets the real modules, bound in their parent package as an ordinary import binds them."""
    code = """
import sys, kagglekit
kagglekit.list_competitions()
assert type(sys.modules["numpy"]).__name__ == "_LazyModule", type(sys.modules["numpy"])
import PIL, pandas
print(PIL.Image.new("RGB", (3, 2)).size, pandas.DataFrame({"a": [1.5]})["a"].sum())
"""
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert done.stdout.strip() == "(3, 2) 1.5", done.stderr


def test_library_deprecation_warnings_are_hidden_and_kagglekits_own_are_not():
    code = """
import warnings
from kagglekit.cli import quiet_library_warnings
quiet_library_warnings()
for module in ("torch.jit._script", "fastai.tabular.core", "pandas.core.frame", "kagglekit.train.member"):
    exec("import warnings; warnings.warn('old API', FutureWarning); warnings.warn('old', DeprecationWarning)",
         {"__name__": module})
import fastai.vision.learner  # torch.jit.script's FutureWarning, pandas' Pandas4Warning, when they are raised
"""
    done = subprocess.run([sys.executable, "-W", "default", "-c", code], capture_output=True, text=True, check=True)
    assert done.stderr.count("FutureWarning: old API") == 1 and done.stderr.count("DeprecationWarning: old") == 1
    assert "torch.jit.script" not in done.stderr and "mode.chained_assignment" not in done.stderr


def _gpu_check():
    spec = importlib.util.spec_from_file_location("gpu_check", ROOT / "benchmarks" / "gpu_check.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_gpu_check_script_parses_and_runs_bf16_only_where_native():
    subprocess.run(["bash", "-n", str(ROOT / "benchmarks" / "gpu_check.sh")], check=True)
    configurations = _gpu_check().configurations
    t4, a100 = configurations((7, 5)), configurations((8, 0))
    assert not any(c.get("precision") == "bf16" for c in t4)
    assert {"precision": "bf16", "channels_last": True} in a100
    assert {} in t4 and {"compile": True} in t4  # kagglekit's automatic choice, and compiled


def test_every_command_hides_library_deprecations_and_keeps_its_own(tmp_path):
    import warnings

    from typer.testing import CliRunner

    from kagglekit.cli import app

    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        assert CliRunner().invoke(app, ["list"]).exit_code == 0
        for module in ("torch.jit._script", "kagglekit.train.member"):
            exec("import warnings; warnings.warn('old API', FutureWarning)", {"__name__": module})
    assert [str(w.message) for w in seen if w.category is FutureWarning] == ["old API"]  # kagglekit's own only
