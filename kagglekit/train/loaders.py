"""fastai DataLoaders over an item table, fed from memory: one image input, one target per head, optional weighted
sampling, tuned for the device.

Each image is resized once to the member's geometry (`kagglekit.train.batches.ImageStore`) and batches are copies
of it: uint8 (or uint16 grey) batches travel to the device, where they become float. On a GPU, augmentation is
fastai's batch transforms on the device, and loader workers with pinned memory keep the next batches ready;
on the CPU it is `CpuAugment` on the small integer images, in this process (see `default_workers`).
"""

from __future__ import annotations

import os
import random
from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from fastai.data.core import DataLoaders, TfmdDL
from fastai.torch_core import TensorCategory, default_device
from fastai.vision.data import get_grid
from fastai.vision.learner import show_results  # with its image methods registered

from kagglekit.competition import Competition
from kagglekit.data.cache import CacheSpec
from kagglekit.data.images import input_channels
from kagglekit.data.splits import valid_mask
from kagglekit.errors import RecipeError
from kagglekit.recipe import Member, Stage
from kagglekit.train.augment import CpuAugment, batch_transforms
from kagglekit.train.batches import ItemSet, ToFloat, image_store, target_tensors
from kagglekit.train.heads import Head, make_heads


class ImageDL(TfmdDL):
    """A fastai DataLoader whose items are row numbers and whose batches an `ItemSet` gathers in one go.

    `augment` (CPU augmentation of single images) applies while the dataset's `split_idx` is 0; `weights` (one
    per item) make a shuffled pass draw items in proportion to them, with replacement (fastai's `WeightedDL`).
    """

    def __init__(self, dataset: ItemSet | None = None, augment: CpuAugment | None = None,
                 weights: np.ndarray | None = None, **kwargs):  # fmt: skip
        self.augment = augment
        self.weights = None if weights is None else np.asarray(weights, dtype=float) / np.sum(weights)
        super().__init__(dataset, **kwargs)

    def create_item(self, s: int | None) -> int:
        return 0 if s is None else s

    def do_batch(self, b: list[int]) -> tuple:
        # Drawn from Python's generator, which fastai seeds per run (set_seed) and per loader worker.
        rng = np.random.default_rng(random.getrandbits(64))
        return self.dataset.batch(np.asarray(b), rng, self.augment)

    def get_idxs(self) -> list[int]:
        if self.weights is None or not self.shuffle or self.n == 0:
            return super().get_idxs()
        return list(np.random.choice(self.n, self.n, p=self.weights))

    def show_results(self, b: tuple, out, max_n: int = 9, ctxs=None, show: bool = True, **kwargs):
        """fastai's `show_results` (what `learn.show_results()` calls): each image titled with its targets over the
        predictions, a single-label title green when right and red when wrong. A multi-label or multi-task batch
        takes fastai's generic image case, which fastai 2.8 cannot dispatch (it subscripts a plum function, fastai
        issue #4092): it is drawn here as fastai means it, on fastai's grid."""
        x, y, samples, outs = super().show_results(b, out, max_n=max_n, show=False)
        if not show:
            return x, y, samples, outs
        if isinstance(y, TensorCategory):
            return show_results(x, y, samples, outs, ctxs=ctxs, max_n=max_n, **kwargs)
        grid = {key: kwargs.pop(key, None) for key in ("nrows", "ncols", "figsize")}
        axes = ctxs if ctxs is not None else get_grid(min(len(samples), max_n), **grid)
        generic = show_results.invoke(object, object, object, object)
        axes = generic(x, y, samples, outs, ctxs=axes, max_n=max_n, **kwargs)
        if ctxs is None:  # a grid of its own: room for titles of two lines per task
            axes[0].figure.tight_layout()
        return axes

    def new(self, dataset=None, cls=None, **kwargs) -> ImageDL:
        carried = {"augment": self.augment, "persistent_workers": self.fake_l.persistent_workers}
        return super().new(dataset, cls, **{**carried, **kwargs})


class ImageDataLoaders(DataLoaders):
    """Training and validation `ImageDL`s; `test_dl` predicts any item table with the validation view.

    fastai's `dls.show_batch()` (`b=None, max_n=9, nrows=None, ncols=None, figsize=None, show=True`) draws a training
    batch as the model gets it (augmented, normalisation undone) titled with its labels, through `ItemSet.decode`.

    `cache_spec` is how the image cache made the inputs (None: the image files themselves), which an exported
    member must repeat to see new images as training saw these.
    """

    cache_spec: CacheSpec | None = None

    def test_dl(self, items: pd.DataFrame, with_labels: bool = False, **kwargs) -> ImageDL:
        store = self.valid.dataset.store
        item_set = ItemSet(store, store.add(items["path"].tolist()), items=items.reset_index(drop=True),
                           heads=self.valid.dataset.heads)  # fmt: skip
        return self.valid.new(item_set, shuffle=False, drop_last=False, **kwargs)


def default_workers(device: torch.device) -> int:
    """Loader processes when the recipe does not say: on a GPU, all cores but one, at most 8, to keep batches
    ready while this process drives the GPU; on the CPU none, as the model needs the cores (measured in
    benchmarks/results/data_pipeline.txt: on 2 cores a training epoch takes 1.10x as long with 2 workers)."""
    if device.type != "cuda":
        return 0
    return min(max(len(os.sched_getaffinity(0)) - 1, 1), 8)


def make_dataloaders(
    train: pd.DataFrame,
    is_valid: pd.Series,
    heads: Sequence[Head],
    member: Member,
    num_workers: int | None = None,
    channels: int = 3,
    stage: Stage | None = None,
    weights: np.ndarray | None = None,
    device: torch.device | str | None = None,
) -> ImageDataLoaders:
    """fastai DataLoaders over the item table (`path` to images or cache entries): one image input, one target per
    head, on `device` (default: the GPU if there is one).

    `stage` sets the size and resize method (default: the member's last stage); `weights` (one per row of
    `train`) makes the training loader sample rows in proportion to them. `num_workers` defaults to
    `default_workers`; on CUDA the loaders pin memory and keep their workers between epochs.
    """
    stage = stage or member.stage_list[-1]
    device = torch.device(device) if device is not None else default_device()
    on_gpu = device.type == "cuda"
    workers = default_workers(device) if num_workers is None else num_workers
    store = image_store(stage.size, stage.resize, channels)
    rows = store.add(train["path"].tolist())
    targets = target_tensors(train, heads)
    valid = np.array(is_valid, dtype=bool)  # a copy: torch wants writable arrays
    sets = [ItemSet(store, rows[mask], tuple(t[torch.from_numpy(mask)] for t in targets), split_idx,
                    train[mask].reset_index(drop=True), tuple(heads))
            for mask, split_idx in ((~valid, 0), (valid, 1))]  # fmt: skip
    after_batch = [ToFloat(), *(batch_transforms(member.aug, stage.size) if on_gpu else [])]
    common = {"num_workers": workers, "pin_memory": on_gpu, "persistent_workers": on_gpu and workers > 0,
              "device": device, "augment": None if on_gpu else CpuAugment(member.aug, stage.size)}  # fmt: skip
    train_weights = None if weights is None else np.asarray(weights, dtype=float)[~valid]
    train_dl = ImageDL(sets[0], bs=member.step_batch_size, shuffle=True, drop_last=True, weights=train_weights,
                       after_batch=after_batch, **common)  # fmt: skip
    valid_dl = train_dl.new(sets[1], shuffle=False, drop_last=False, weights=None)
    dls = ImageDataLoaders(train_dl, valid_dl, device=device)
    dls.cache_spec = CacheSpec.of_entry(train["path"].iloc[0]) if len(train) else None
    return dls


def member_dataloaders(
    member: Member,
    competition: Competition,
    train: pd.DataFrame,
    is_valid: pd.DataFrame | pd.Series | np.ndarray,
    vocab: dict[str, list[str]],
    stage: int = 0,
    num_workers: int | None = None,
    weights: np.ndarray | None = None,
) -> ImageDataLoaders:
    """The loaders `train_member` trains `member` on in its stage number `stage` (of `member.stage_list`; the
    first by default): its heads, size, resize method, augmentation and batch size, the rows `is_valid` (a
    `make_splits` frame or booleans aligned with `train`) holds out. `dls.show_batch()` shows what it will see."""
    heads = make_heads(competition, vocab, member)
    is_valid = valid_mask(is_valid, train)
    channels = input_channels(competition)
    return make_dataloaders(train, is_valid, heads, member, num_workers, channels, member.stage_list[stage], weights)


def cache_settings(dls: DataLoaders) -> dict | None:
    """The image cache settings behind a member's inputs, for member.json (None: trained on the files themselves)."""
    spec = getattr(dls, "cache_spec", None)
    return None if spec is None else spec.to_dict()


def sampling_weights(
    member: Member, train: pd.DataFrame, target: str, previous_losses: pd.Series | None
) -> np.ndarray | None:
    """Per-row sampling weights: none, inverse class frequency, or the previous member's per-item losses."""
    if member.sampling == "none":
        return None
    if member.sampling == "balanced":
        return (1.0 / train[target].map(train[target].value_counts())).to_numpy()
    if previous_losses is None:
        raise RecipeError(f"member {member.name!r}: sampling = 'loss' needs an earlier member to take losses from.")
    losses = train["id"].map(previous_losses).fillna(previous_losses.mean()).to_numpy()
    return losses + 1e-3 * losses.mean()  # a little weight for rows the previous member already fits
