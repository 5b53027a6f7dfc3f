"""How quickly the quick commands answer: `kagglekit --help`, `list` and `check`, against a bare typer app.

    python benchmarks/cli_startup.py [--runs 15] [--out benchmarks/results/cli_startup.txt]

Each command runs `--runs` times as a fresh process (what a user waits for); the median and the fastest are
reported, with the heavy libraries each one imported. The bare typer app has the same shape (a callback, commands
with typed options), so its time is the floor any typer CLI pays here.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HEAVY = ("numpy", "pandas", "PIL.Image", "sklearn", "pydicom", "torch", "fastai")
BARE = """
import typer
app = typer.Typer()
@app.callback()
def main(verbose: bool = False): pass
@app.command("list")
def list_command(): print("listed")
@app.command()
def check(file: str, competition: str = ""): print(file)
app()
"""
PROBE = """
import atexit, runpy, sys
atexit.register(lambda: print("HEAVY", *sorted(m for m in {heavy} if m in sys.modules and
                                                 type(sys.modules[m]).__name__ != "_LazyModule"), file=sys.stderr))
sys.argv = {argv}
runpy.run_module("kagglekit", run_name="__main__")
"""


def _time(argv: list[str], runs: int) -> tuple[float, float]:
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        subprocess.run(argv, capture_output=True, env={**os.environ, "COLUMNS": "120"})
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def _heavy(arguments: list[str]) -> str:
    """The heavy libraries `kagglekit ARGUMENTS` imports."""
    code = PROBE.format(heavy=set(HEAVY), argv=["kagglekit", *arguments])
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    return next((line[6:] for line in done.stderr.splitlines() if line.startswith("HEAVY")), "").strip()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=15)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "cli_startup.txt")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "bare.py"
        bare.write_text(BARE)
        submission = Path(tmp) / "submission.csv"
        submission.write_text("image_id,label\n100001.jpg,blast\n100002.jpg,normal\n")
        kagglekit = [sys.executable, "-m", "kagglekit"]
        commands = {
            "bare typer app --help": [sys.executable, str(bare), "--help"],
            "bare typer app list": [sys.executable, str(bare), "list"],
            "kagglekit --help": [*kagglekit, "--help"],
            "kagglekit list": [*kagglekit, "list"],
            "kagglekit check FILE --competition paddy": [*kagglekit, "check", str(submission), "--competition=paddy"],
        }
        load = os.getloadavg()[0]
        lines = [f"kagglekit quick commands, {args.runs} runs each, {len(os.sched_getaffinity(0))} cores, "
                 f"load average {load:.1f}, {time.strftime('%Y-%m-%d %H:%M')}", "",
                 f"{'command':<44} {'median':>8} {'fastest':>8}  heavy libraries imported"]  # fmt: skip
        for name, argv in commands.items():
            median, fastest = _time(argv, args.runs)
            heavy = _heavy(argv[3:]) if argv[:3] == kagglekit else ""
            lines.append(f"{name:<44} {median:>7.3f}s {fastest:>7.3f}s  {heavy or '-'}")
            print(lines[-1], flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(lines) + "\n")
    print(f"Written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
