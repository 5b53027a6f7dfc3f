"""Baseline vs EMA vs mixup vs cutmix vs label smoothing vs checkpoint averaging on the paddy sample, 3 seeds.

One member, the budget of benchmarks/multitask_paddy.py (resnet18 from scratch, 64 px squish, flips, 8 epochs,
lr 3e-3, batch 32, 25% held out, no TTA), trained once per variant and seed; each variant adds one setting with
the value a user would take from timm's scripts (`--model-ema-decay 0.9998`, `--mixup 0.2`, `--cutmix 1.0`,
`--smoothing 0.1`, avg_checkpoints.py's top 3; greedy: a soup of the top 3). Prints the validation accuracy on
the held-out rows and the test accuracy against the sample's hidden answers (150 images) for every run, then
mean ± sd per variant and the difference from the baseline with the same seed (mean ± sd of the paired
differences). Nothing is tuned for this sample. Usage:

    .venv/bin/python benchmarks/regularisation_paddy.py [--seeds 3] [--epochs 8] [--variants baseline,ema,...]

Writes nothing but temporary files; the recorded output is benchmarks/results/regularisation_paddy.txt.
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
{settings}
"""

VARIANTS = {
    "baseline": "",
    "ema": "ema = 0.9998",
    "mixup": "mixup = 0.2",
    "cutmix": "cutmix = 1.0",
    "label_smoothing": "label_smoothing = 0.1",
    "average_top3": "average_checkpoints = 3",
    "greedy_soup_top3": 'average_checkpoints = 3\naverage_mode = "greedy"',
}


def _summary(label: str, values: list[float]) -> str:
    return f"{label} {np.mean(values):.4f} ± {np.std(values):.4f}"


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seeds", type=int, default=3)
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--variants", default=",".join(VARIANTS))
    args = parser.parse_args()
    variants = args.variants.split(",")
    paddy = get_competition("paddy")
    sample = ensure_sample(paddy)
    scores: dict[str, dict[str, list[float]]] = {v: {"valid": [], "test": []} for v in variants}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in range(args.seeds):
            for variant in variants:
                recipe = Path(tmp) / f"{variant}-{seed}.toml"
                recipe.write_text(RECIPE.format(seed=seed, epochs=args.epochs, settings=VARIANTS[variant]))
                result = run(paddy, recipe, data=sample.data_dir, answers=sample.answers, runs_dir=Path(tmp) / "runs",
                             submissions_dir=Path(tmp) / "subs", fresh=True)  # fmt: skip
                member = result.members[0]
                scores[variant]["valid"].append(member.valid_score)
                scores[variant]["test"].append(result.test_score)
                last = f" (last epoch {member.last_epoch_scores['label']:.3f})" if member.last_epoch_scores else ""
                print(f"seed {seed} {variant:17s} valid accuracy {member.valid_score:.4f}{last}, "
                      f"test accuracy {result.test_score:.4f}", flush=True)  # fmt: skip
    base = scores.get("baseline")
    for variant in variants:
        valid, test = scores[variant]["valid"], scores[variant]["test"]
        line = f"{variant:17s} {_summary('valid', valid)}, {_summary('test', test)}"
        if base and variant != "baseline":
            deltas = {k: np.subtract(scores[variant][k], base[k]).tolist() for k in ("valid", "test")}
            line += f" | vs baseline: {_summary('valid', deltas['valid'])}, {_summary('test', deltas['test'])}"
        print(line + f" over {args.seeds} seeds")


if __name__ == "__main__":
    main()
