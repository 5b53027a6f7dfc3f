"""Disease error of single-task vs multi-task (disease + variety) training on the paddy sample, same budget.

The fastai course reports 0.0408 (multi-task) vs 0.0384 (single-task) disease error at 5 epochs on the real data,
so whether the variety head helps needs measuring. This runs both recipes on the bundled sample with three
seeds each and prints the disease error of every run and the mean. Usage:

    .venv/bin/python benchmarks/multitask_paddy.py [--seeds 3] [--epochs 8]
"""

from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import numpy as np

from kagglekit import get_competition
from kagglekit.pipeline import run
from kagglekit.samples import ensure_sample

RECIPE = """
valid_pct = 0.25
seed = {seed}
tta = 0
[[members]]
name = "m"
arch = "resnet18"
size = 64
resize = "squish"
aug = "flip"
epochs = {epochs}
lr = 3e-3
batch_size = 32
{tasks}
"""


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    args = parser.parse_args()
    paddy = get_competition("paddy")
    sample = ensure_sample(paddy)
    errors: dict[str, list[float]] = {"single-task": [], "multi-task": []}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for label, tasks in (("single-task", ""), ("multi-task", "tasks = { label = 1.0, variety = 1.0 }")):
                recipe = Path(tmp) / f"{label}-{seed}.toml"
                recipe.write_text(RECIPE.format(seed=seed, epochs=args.epochs, tasks=tasks))
                result = run(paddy, recipe, data=sample.data_dir, runs_dir=Path(tmp) / "runs",
                             submissions_dir=Path(tmp) / "subs", fresh=True)  # fmt: skip
                error = 1 - result.members[0].valid_score
                errors[label].append(error)
                print(f"seed {seed} {label:12s} disease error {error:.4f} (variety acc, no TTA: "
                      f"{result.members[0].task_scores.get('variety', float('nan')):.3f})", flush=True)  # fmt: skip
    for label, values in errors.items():
        print(f"{label:12s} mean disease error {np.mean(values):.4f} ± {np.std(values):.4f} over {len(values)} seeds")


if __name__ == "__main__":
    main()
