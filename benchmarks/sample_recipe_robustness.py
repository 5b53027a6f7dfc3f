"""The `sample` recipe on paddy-layout datasets it was not tuned on, with and without per-epoch batch-norm statistics.

On a 196-image paddy-layout set the project never saw, member resnet10t-squish of the paddy `sample` recipe
predicted one class for all 6 epochs (validation 0.16) while its training loss fell. The cause is batch norm's
running statistics (see kagglekit/train/batchnorm.py): with 4-5 optimizer steps per epoch their momentum-0.1 average
reaches back to the weights of earlier epochs, and validation normalises with statistics of a model that no longer
exists. This script generates datasets with other seeds and sizes (`kagglekit sample paddy DIR --seed S --n-train
N`, 480x640 images as in the real data), runs the shipped `sample` recipe on each with the fix (EpochBatchNorm) and
without it (the callback replaced by one that does nothing), and prints each member's validation accuracy (TTA),
the ensemble's, the test accuracy against the hidden answers and the best constant prediction's validation
accuracy (the largest class's share). Usage:

    .venv/bin/python benchmarks/sample_recipe_robustness.py [--datasets 11:196,12:196,13:120,14:400]

Writes nothing but temporary files; the recorded output is benchmarks/results/sample_recipe_robustness.txt.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from contextlib import contextmanager, nullcontext
from pathlib import Path

import pandas as pd
from fastai.callback.core import Callback

from kagglekit import get_competition
from kagglekit.pipeline import run
from kagglekit.samples import write_sample
from kagglekit.train import member as member_module


class _Unchanged(Callback):
    """Stands in for EpochBatchNorm: batch norm's own momentum-0.1 running statistics."""


@contextmanager
def _without_epoch_statistics():
    original = member_module.EpochBatchNorm
    member_module.EpochBatchNorm = _Unchanged
    try:
        yield
    finally:
        member_module.EpochBatchNorm = original


def _largest_class_share(result, data_dir: Path) -> float:
    train = pd.read_csv(data_dir / "train.csv", dtype=str)
    valid_ids = set(result.members[0].valid.ids)
    labels = train.loc[train["image_id"].isin(valid_ids), "label"]
    return float(labels.value_counts(normalize=True).iloc[0])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--datasets", default="11:196,12:196,13:120,14:400", help="seed:n_train,...")
    args = parser.parse_args()
    paddy = get_competition("paddy")
    with tempfile.TemporaryDirectory() as tmp:
        for spec in args.datasets.split(","):
            seed, n_train = (int(v) for v in spec.split(":"))
            sample = write_sample(paddy, Path(tmp) / f"data-{seed}-{n_train}", seed=seed, n_train=n_train, n_test=100)
            for variant in ("momentum 0.1 (before)", "per-epoch statistics"):
                context = _without_epoch_statistics() if variant.startswith("momentum") else nullcontext()
                started = time.perf_counter()
                folders = {"runs_dir": Path(tmp) / "runs", "submissions_dir": Path(tmp) / "subs"}
                with context:
                    result = run(paddy, "sample", data=sample.data_dir, answers=sample.answers, fresh=True, **folders)
                members = ", ".join(f"{m.name} {m.valid_score:.3f}" for m in result.members)
                print(f"seed {seed:3d} n_train {n_train:4d} {variant:22s} | {members} | ensemble "
                      f"{result.ensemble.score:.3f}, test {result.test_score:.3f} | largest class "
                      f"{_largest_class_share(result, sample.data_dir):.3f} | {time.perf_counter() - started:.0f} s",
                      flush=True)  # fmt: skip


if __name__ == "__main__":
    main()
