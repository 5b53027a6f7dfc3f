"""Feeding a model on few CPU cores: kagglekit's loaders against fastai's default pipeline, side by side in one run.

    python benchmarks/data_pipeline.py DATA_DIR [--n 1000] [--size 224] [--out benchmarks/results/data_pipeline.txt]

DATA_DIR holds (or receives, generated once: a few minutes) a Paddy-layout set of ~`n` 480x640 JPEGs. On the CPU,
one pass at `size` px, batch 64, it measures images/s for:

- fastai's default loader (a `DataBlock` with `Resize` item transforms, 0 workers), with and without augmentation
  (`aug_transforms(min_scale=0.75)`, kagglekit's `default` preset);
- kagglekit's loaders with a cold cache (decoding every JPEG, then resizing once into memory), a warm cache (the
  second run of a recipe: nothing decoded), and every later epoch (batches gathered from memory), with and without
  augmentation (on the CPU: `CpuAugment` on uint8 images);
- the limit: batches read from a pre-resized uint8 memmap (no decoding, no resizing, no augmentation);
- kagglekit's steady epoch with 0, 1 and 2 loader workers (what `default_workers` chose from);
- one training epoch of a kagglekit member (`train_member`) against bare fastai
  (`vision_learner(...).fit_one_cycle(1)`) on the same images, and the member again with 2 loader workers;
- TTA (`predict_member`) peak memory for n = 0, 4 and 16 augmented passes (256 images at the training size).

Every number is from this one run on this machine; the ratios are what to compare across machines.
"""

from __future__ import annotations

import argparse
import os
import resource
import shutil
import sys
import tempfile
import time
import warnings
from functools import partial
from pathlib import Path

import numpy as np
import pandas as pd
import torch

from kagglekit import get_competition, load_items
from kagglekit.data.images import prepare_images
from kagglekit.data.splits import make_splits
from kagglekit.predict.tta import predict_member
from kagglekit.recipe import Member
from kagglekit.samples import write_sample
from kagglekit.train import batches, create_learner, make_dataloaders, make_heads, train_member

warnings.filterwarnings("ignore")
BATCH = 64


def _timed(fn):
    start = time.perf_counter()
    result = fn()
    return time.perf_counter() - start, result


def _pass(dl) -> int:
    seen = 0
    for batch in dl:
        seen += len(batch[0])
    return seen


def fastai_loader(train: pd.DataFrame, size: int, augment: bool):
    from fastai.data.block import CategoryBlock, ColReader, DataBlock, RandomSplitter
    from fastai.vision.augment import Resize, aug_transforms
    from fastai.vision.data import ImageBlock

    block = DataBlock(
        blocks=(ImageBlock, CategoryBlock), get_x=ColReader("source"), get_y=ColReader("label"),
        splitter=RandomSplitter(0.0, seed=0), item_tfms=Resize(size),
        batch_tfms=aug_transforms(size=size, min_scale=0.75) if augment else None,
    )  # fmt: skip
    return block.dataloaders(train, bs=BATCH, num_workers=0, device="cpu")


def kagglekit_loader(train: pd.DataFrame, size: int, augment: bool, workers: int = 0):
    member = Member(name="bench", arch="resnet18", size=size, aug="default" if augment else "none", batch_size=BATCH)
    heads = make_heads(get_competition("paddy"), {"label": sorted(train["label"].unique())}, member)
    return make_dataloaders(train, pd.Series(False, index=train.index), heads, member, workers, device="cpu")


def memmap_limit(n: int, size: int, folder: Path) -> float:
    """Images/s reading shuffled batches of a pre-resized uint8 memmap into float tensors."""
    images = np.lib.format.open_memmap(folder / "limit.npy", mode="w+", dtype=np.uint8, shape=(n, size, size, 3))
    images[:] = np.random.default_rng(0).integers(0, 255, images.shape, dtype=np.uint8)
    images.flush()
    images = np.load(folder / "limit.npy", mmap_mode="r")
    order = np.random.default_rng(1).permutation(n)
    start = time.perf_counter()
    for first in range(0, n - BATCH + 1, BATCH):
        rows = np.sort(order[first : first + BATCH])
        torch.from_numpy(images[rows]).permute(0, 3, 1, 2).float().div_(255)
    return (n // BATCH * BATCH) / (time.perf_counter() - start)


def _epoch_rate(dl) -> float:
    """Images/s of one more pass over a loader that has already run once."""
    seconds, seen = _timed(lambda: _pass(dl))
    return seen / seconds


def loaders(train: pd.DataFrame, size: int, cache: Path, report: list[str]) -> None:
    n = len(train)
    rows = []
    for augment in (False, True):
        label = "with augmentation" if augment else "no augmentation"
        dls = fastai_loader(train, size, augment)
        _pass(dls.train)
        fastai_rate = _epoch_rate(dls.train)
        rows.append((f"fastai default loader, {label}", fastai_rate))
        shutil.rmtree(cache, ignore_errors=True)
        batches._store = None
        cold, _ = _timed(partial(kagglekit_pass, train, size, augment, cache))
        rows.append((f"kagglekit, cold cache (decode + resize + 1 epoch), {label}", n / cold))
        batches._store = None
        warm, dls = _timed(partial(kagglekit_pass, train, size, augment, cache))
        rows.append((f"kagglekit, warm cache (resize + 1 epoch), {label}", n / warm))
        later = _epoch_rate(dls.train)
        rows.append((f"kagglekit, every later epoch, {label}", later))
        report.append(f"  ratio kagglekit later epochs / fastai default, {label}: {later / fastai_rate:.1f}x")
        report.append(f"  ratio kagglekit warm first epoch / fastai default, {label}: {n / warm / fastai_rate:.1f}x")
    with tempfile.TemporaryDirectory() as tmp:
        limit = memmap_limit(n, size, Path(tmp))
    rows.append(("limit: pre-resized uint8 memmap read into batches", limit))
    no_aug_later = next(rate for name, rate in rows if name == "kagglekit, every later epoch, no augmentation")
    report.append(f"  kagglekit later epochs, no augmentation / memmap limit: {no_aug_later / limit:.2f}")
    report[:0] = [f"{name:<72} {rate:>9.0f} images/s" for name, rate in rows]


def kagglekit_pass(train: pd.DataFrame, size: int, augment: bool, cache: Path):
    items = _items(train)
    prepared = prepare_images(get_competition("paddy"), items, cache, cover=(size, size))
    dls = kagglekit_loader(prepared.items.train, size, augment)
    _pass(dls.train)
    return dls


def _items(train: pd.DataFrame):
    from kagglekit.data.items import Items

    empty = pd.DataFrame(columns=["id", "path", "reason", "line"])
    return Items(Path("."), train.assign(path=train["source"]), train.head(0).assign(path=[]), empty, empty)


def workers(train: pd.DataFrame, size: int, cache: Path, report: list[str]) -> None:
    prepared = prepare_images(get_competition("paddy"), _items(train), cache, cover=(size, size))
    for augment in (False, True):
        for count in (0, 1, 2):
            dls = kagglekit_loader(prepared.items.train, size, augment, workers=count)
            _pass(dls.train)  # workers started, store filled
            rate = _epoch_rate(dls.train)
            label = "with augmentation" if augment else "no augmentation"
            report.append(f"{f'kagglekit later epoch, {count} worker(s), {label}':<72} {rate:>9.0f} images/s")


def training(train: pd.DataFrame, cache: Path, arch: str, size: int, report: list[str]) -> None:
    from fastai.metrics import accuracy
    from fastai.vision.learner import vision_learner

    paddy = get_competition("paddy")
    prepared = prepare_images(paddy, _items(train), cache, cover=(size, size))
    vocab = {"label": sorted(train["label"].unique()), "variety": sorted(train["variety"].unique())}
    split = make_splits(prepared.items.train["id"], valid_pct=0.2, seed=0)
    member = Member(name="bench", arch=arch, size=size, aug="default", epochs=1, batch_size=BATCH, freeze_epochs=0)
    epoch = {}
    for workers in (0, 2):  # the CPU default is 0: workers would compete with the model for the cores
        with tempfile.TemporaryDirectory() as out:
            epoch[workers], _ = _timed(lambda out=out, workers=workers: train_member(
                member, paddy, prepared.items.train, split, vocab, Path(out), seed=0, num_workers=workers))  # fmt: skip
    ours = epoch[0]

    def bare():
        frame = train.assign(is_valid=split["is_valid"].to_numpy())
        from fastai.data.block import CategoryBlock, ColReader, ColSplitter, DataBlock
        from fastai.vision.augment import Resize, aug_transforms
        from fastai.vision.data import ImageBlock

        block = DataBlock(blocks=(ImageBlock, CategoryBlock), get_x=ColReader("source"), get_y=ColReader("label"),
                          splitter=ColSplitter("is_valid"), item_tfms=Resize(size),
                          batch_tfms=aug_transforms(size=size, min_scale=0.75))  # fmt: skip
        learn = vision_learner(block.dataloaders(frame, bs=BATCH, num_workers=0), arch, pretrained=False,
                               metrics=accuracy)  # fmt: skip
        with learn.no_bar(), learn.no_logging():
            learn.fit_one_cycle(1)

    theirs, _ = _timed(bare)
    report.append(f"{f'one epoch, kagglekit train_member ({arch}, {size} px, warm cache)':<72} {ours:>9.1f} s")
    report.append(f"{f'one epoch, bare fastai vision_learner.fit_one_cycle ({arch}, {size} px)':<72} {theirs:>9.1f} s")
    report.append(f"  epoch time kagglekit / bare fastai: {ours / theirs:.2f} (target: at most 1.05)")
    report.append(f"{'one epoch, kagglekit train_member with 2 loader workers':<72} {epoch[2]:>9.1f} s")
    report.append(f"  epoch time 2 workers / 0 workers (the CPU default): {epoch[2] / ours:.2f}")


def _peak_rss_mb() -> float:
    """Peak resident memory since the last reset (Linux: VmHWM, reset through /proc/self/clear_refs)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def tta_memory(train: pd.DataFrame, cache: Path, size: int, report: list[str]) -> None:
    paddy = get_competition("paddy")
    prepared = prepare_images(paddy, _items(train), cache, cover=(size, size))
    member = Member(name="bench", arch="resnet18", size=size, aug="default", batch_size=BATCH)
    heads = make_heads(paddy, {"label": sorted(train["label"].unique())}, member)
    split = make_splits(prepared.items.train["id"], valid_pct=0.2, seed=0)
    learn = create_learner(make_dataloaders(prepared.items.train, split["is_valid"], heads, member, 0), member, heads)
    items = prepared.items.train.head(256)
    predict_member(learn, items.head(BATCH), 0)  # warm up allocators
    for n_tta in (0, 4, 16):
        Path("/proc/self/clear_refs").write_text("5")  # reset the peak
        before = _peak_rss_mb()
        seconds, _ = _timed(lambda n_tta=n_tta: predict_member(learn, items, n_tta))
        report.append(f"{f'TTA n={n_tta} over {len(items)} images: peak memory above start':<72} "
                      f"{_peak_rss_mb() - before:>9.0f} MB  ({seconds:.1f} s)")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("data_dir", type=Path)
    parser.add_argument("--n", type=int, default=1000, help="training images to generate (when DATA_DIR is empty)")
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--train-arch", default="resnet18")
    parser.add_argument("--train-size", type=int, default=128, help="size of the training and TTA comparisons")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results" / "data_pipeline.txt")
    args = parser.parse_args()
    torch.set_num_threads(len(os.sched_getaffinity(0)))
    paddy = get_competition("paddy")
    folder = args.data_dir / paddy.slug
    if not (folder / paddy.train_csv).is_file():
        print(f"Writing {args.n} paddy-shaped 480x640 JPEGs to {folder} (once)...", flush=True)
        write_sample(paddy, args.data_dir, seed=0, n_train=args.n, n_test=8)
    train = load_items(paddy, folder).train
    train = train.assign(source=train["path"]).head(args.n)
    cores = len(os.sched_getaffinity(0))
    report = [f"kagglekit data pipeline benchmark: {len(train)} images at {args.size} px, batch {BATCH}, CPU only, "
              f"{cores} cores, torch {torch.__version__}, {time.strftime('%Y-%m-%d %H:%M')}", ""]  # fmt: skip
    with tempfile.TemporaryDirectory() as tmp:
        cache = Path(tmp) / "cache"
        sections = [
            ("Loaders, one pass", lambda r: loaders(train, args.size, cache, r)),
            ("Loader workers (kagglekit, every later epoch)", lambda r: workers(train, args.size, cache, r)),
            ("Training", lambda r: training(train, cache, args.train_arch, args.train_size, r)),
            ("TTA memory (running mean)", lambda r: tta_memory(train, cache, args.train_size, r)),
        ]
        for title, run in sections:
            lines: list[str] = []
            run(lines)
            report += [title, *lines, ""]
            print("\n".join([title, *lines, ""]), flush=True)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text("\n".join(report))
    print(f"Written to {args.out}", file=sys.stderr)


if __name__ == "__main__":
    main()
