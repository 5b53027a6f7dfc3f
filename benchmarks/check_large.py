"""How long `check_submission` takes on the largest submission of the bundled competitions: Dog Breed
Identification's 10,357 test rows x 120 breed probabilities, with one earlier file to compare with.

    python benchmarks/check_large.py [--runs 3] [--out benchmarks/results/check_large.txt]

Prints the fastest of `--runs` checks. To compare two versions, check each out and run this same script.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

from kagglekit.registry import get_competition
from kagglekit.submission.checks import check_submission

ROWS, CLASSES = 10_357, 120


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "check_large.txt")
    args = parser.parse_args()
    dogs = get_competition("dogs")
    breeds = [f"breed_{i:03d}" for i in range(CLASSES)]
    frame = pd.DataFrame(np.random.default_rng(0).dirichlet(np.ones(CLASSES), ROWS), columns=breeds)
    frame.insert(0, "id", [f"{i:032x}" for i in range(ROWS)])
    with tempfile.TemporaryDirectory() as tmp:
        new, prior, sample = (Path(tmp) / name for name in ("new.csv", "prior.csv", "sample_submission.csv"))
        frame.to_csv(new, index=False)
        frame.to_csv(prior, index=False)
        frame.assign(**{b: 1 / CLASSES for b in breeds}).to_csv(sample, index=False)
        times = []
        for _ in range(args.runs):
            started = time.perf_counter()
            report = check_submission(new, dogs, sample, against=[prior])
            times.append(time.perf_counter() - started)
    assert report.ok and len(report.comparisons) == 1, report.errors
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    line = (f"check_submission, {ROWS} rows x {CLASSES} probabilities + 1 earlier file: fastest of {args.runs} "
            f"{min(times):.2f} s (commit {commit}, {len(os.sched_getaffinity(0))} cores, load average "
            f"{os.getloadavg()[0]:.1f}, {time.strftime('%Y-%m-%d %H:%M')})")  # fmt: skip
    print(line)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(line + "\n")
    print(f"Written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
