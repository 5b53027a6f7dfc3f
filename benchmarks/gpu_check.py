"""The Python half of benchmarks/gpu_check.sh: train one member for a few hundred steps per configuration on a GPU.

Each configuration goes through kagglekit's own path (image store, loaders with GPU augmentation, `create_learner`,
`apply_precision`), on random 256 x 256 images named as image cache entries, at 224 px with the `default` preset.
It prints images/s (after warm-up steps, the GPU synchronised) and peak GPU memory, then images/s with 0, 1 and
kagglekit's default number of loader workers, then peak memory with accum = 1 against accum = 4 at the same
effective batch.
"""

from __future__ import annotations

import argparse
import tempfile
import time
import warnings
from pathlib import Path

import numpy as np
import pandas as pd
import torch
from fastai.callback.core import Callback, CancelFitException

from kagglekit.recipe import Member
from kagglekit.train import Head, create_learner, make_dataloaders
from kagglekit.train.learner import apply_precision
from kagglekit.train.loaders import default_workers

WARMUP = 20
BATCH = 64


def configurations(capability: tuple[int, int]) -> list[dict]:
    """Member settings to compare on a GPU of this compute capability: bf16 only where it is native (>= 8.0)."""
    configs = [
        {"precision": "fp32", "channels_last": False},
        {"precision": "fp16", "channels_last": False},
        {"precision": "fp16", "channels_last": True},
    ]
    if capability >= (8, 0):
        configs += [{"precision": "bf16", "channels_last": False}, {"precision": "bf16", "channels_last": True}]
    return [*configs, {}, {"compile": True}]  # {}: kagglekit's automatic choice


class StepTimer(Callback):
    """Times training steps after `WARMUP` of them and stops the fit after `steps`."""

    def __init__(self, steps: int):
        self.steps, self.count, self.started = steps, 0, None

    def after_batch(self):
        if not self.training:
            return
        self.count += 1
        if self.count == WARMUP:
            torch.cuda.synchronize()
            self.started = time.perf_counter()
        if self.count == self.steps:
            torch.cuda.synchronize()
            self.seconds = time.perf_counter() - self.started
            raise CancelFitException()


def _table(folder: Path, n: int) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    rows = []
    for i in range(n):
        path = folder / f"image{i}.256x256.npy"
        np.save(path, rng.integers(0, 255, (256, 256, 3), dtype=np.uint8))
        rows.append({"id": str(i), "path": str(path), "label": str(i % 10)})
    return pd.DataFrame(rows)


def train_steps(
    table: pd.DataFrame, arch: str, steps: int, settings: dict, accum: int = 1, workers: int | None = None
) -> tuple:
    """(images/s, peak GPU memory in GiB, notes) for `steps` steps of one member (`workers`: loader processes,
    default kagglekit's choice)."""
    member = Member(name="check", arch=arch, size=224, batch_size=BATCH, accum=accum, **settings)
    head = Head("label", "label", "single", tuple(str(i) for i in range(10)), 1.0, 0)
    valid = pd.Series([False] * (len(table) - BATCH) + [True] * BATCH)
    learn = create_learner(make_dataloaders(table, valid, [head], member, workers), member, [head])
    notes = apply_precision(learn, member)
    timer = StepTimer(steps * accum)
    torch.cuda.empty_cache()
    torch.cuda.reset_peak_memory_stats()
    with learn.no_bar(), learn.no_logging():
        learn.fit(100, 1e-3, cbs=[timer])
    images = (timer.count - WARMUP) * member.step_batch_size
    return images / timer.seconds, torch.cuda.max_memory_allocated() / 2**30, notes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--arch", default="resnet50")
    parser.add_argument("--steps", type=int, default=300)
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    assert torch.cuda.is_available(), "gpu_check needs CUDA"
    capability = torch.cuda.get_device_capability()
    with tempfile.TemporaryDirectory() as tmp:
        table = _table(Path(tmp), 1024)
        print(f"\n{'configuration':<48} {'images/s':>9} {'peak GiB':>9}  notes")
        for settings in configurations(capability):
            rate, peak, notes = train_steps(table, args.arch, args.steps, settings)
            name = ", ".join(f"{k}={v}" for k, v in settings.items()) or "automatic (kagglekit's choice)"
            print(f"{name:<48} {rate:>9.0f} {peak:>9.2f}  {'; '.join(notes)}", flush=True)
        chosen = default_workers(torch.device("cuda"))
        print(f"\nLoader workers (automatic precision; kagglekit's default is {chosen}):")
        for workers in sorted({0, 1, chosen}):
            rate, _, _ = train_steps(table, args.arch, args.steps, {}, workers=workers)
            print(f"{f'{workers} worker(s)':<48} {rate:>9.0f}", flush=True)
        print(f"\nSame effective batch ({BATCH}), automatic precision:")
        for accum in (1, 4):
            rate, peak, _ = train_steps(table, args.arch, max(args.steps // 4, WARMUP + 10), {}, accum)
            print(f"accum = {accum} ({BATCH // accum} images per pass){'':<18} {rate:>9.0f} {peak:>9.2f}", flush=True)


if __name__ == "__main__":
    main()
