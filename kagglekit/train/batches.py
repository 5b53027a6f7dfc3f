"""Batches gathered from memory: each image of a member's geometry resized once, then only copied per batch.

An epoch then costs a copy per image (and, on the CPU, one uint8 resampling when augmenting) instead of a decode
and a resize: the image cache removed decoding, `ImageStore` removes the per-epoch resize. A store holds one
geometry (size, resize method, channels); consecutive members and their TTA with the same geometry share it.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import torch
from fastai.data.core import Transform  # fastcore.transform before fastai 2.8, fasttransform since
from fastai.data.transforms import Category, MultiCategory
from fastai.torch_core import TensorCategory, TensorImage, TensorMultiCategory

from kagglekit._output import track
from kagglekit.data.cache import load_image
from kagglekit.data.pixels import ResizeMethod, Size, fitted, window
from kagglekit.train.heads import Head


@dataclass
class ImageStore:
    """Every image added, `fitted` to one geometry and kept in memory, by path."""

    size: Size
    method: ResizeMethod
    channels: int
    images: list[np.ndarray] = field(default_factory=list)
    rows: dict[str, int] = field(default_factory=dict)

    def add(self, paths: Sequence[str]) -> np.ndarray:
        """The row of each path, loading (in threads: Pillow and file reads release the GIL) the ones not held."""
        missing = list(dict.fromkeys(p for p in map(str, paths) if p not in self.rows))
        if missing:
            load = lambda path: fitted(load_image(path, self.channels), self.size, self.method)  # noqa: E731
            with ThreadPoolExecutor(max_workers=len(os.sched_getaffinity(0))) as pool:
                loaded = track(
                    pool.map(load, missing),
                    total=len(missing),
                    description=f"Resizing {len(missing)} images to {self.size[0]}x{self.size[1]}",
                )
                for path, image in zip(missing, loaded, strict=True):
                    self.rows[path] = len(self.images)
                    self.images.append(image)
        return np.array([self.rows[str(p)] for p in paths], dtype=np.int64)

    def gather(self, rows: Sequence[int], rng: np.random.Generator | None, augment: Callable | None) -> np.ndarray:
        """A uint8 (N, H, W, 3) or uint16 (N, H, W) batch: each image's window (random position when `rng` is
        given, as fastai's `Resize` while training; else centred), then `augment(image, rng)` if given."""
        images = [self.images[row] for row in rows]
        if self.method == "squish" and augment is None:  # every image is already exactly the size
            return np.stack(images)
        batch = np.empty((len(images), *self.size, *images[0].shape[2:]), dtype=images[0].dtype)
        for n, image in enumerate(images):
            position = (0.5, 0.5) if rng is None else tuple(rng.uniform(0, 1, 2))
            view = window(image, self.size, position)
            batch[n] = view if augment is None else augment(view, rng)
        return batch


_store: ImageStore | None = None


def image_store(size: Size, method: ResizeMethod, channels: int) -> ImageStore:
    """The store for this geometry: the current one if it matches, else a new one (the old one is let go, so
    memory holds one geometry's images at a time)."""
    global _store
    if _store is None or (_store.size, _store.method, _store.channels) != (tuple(size), method, channels):
        _store = ImageStore(tuple(size), method, channels)
    return _store


@dataclass
class ItemSet:
    """What an `ImageDL` iterates: rows of a store and their targets. `split_idx` 0 draws random windows and
    augments (training, TTA's augmented passes); 1 gives the centred, plain view (validation, prediction).
    `items` is the item table's rows in the same order, so `dls.valid.items` is a frame as in fastai; `heads` say
    what the targets mean, for `decode`."""

    store: ImageStore
    rows: np.ndarray
    targets: tuple[torch.Tensor, ...] = ()
    split_idx: int = 1
    items: pd.DataFrame | None = None
    heads: tuple[Head, ...] = ()
    n_inp = 1

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, index: int) -> int:
        return index

    @contextmanager
    def set_split_idx(self, split_idx: int) -> Iterator[None]:
        saved, self.split_idx = self.split_idx, split_idx
        try:
            yield
        finally:
            self.split_idx = saved

    def batch(self, indices: Sequence[int], rng: np.random.Generator, augment: Callable | None) -> tuple:
        """(images, *targets) for these items: images as a uint8/uint16 TensorImage (N, C, H, W), channels-last in
        memory (how the store holds them), so the move to the GPU is the small integer batch."""
        training = self.split_idx == 0
        pixels = self.store.gather(self.rows[indices], rng if training else None, augment if training else None)
        images = torch.from_numpy(pixels)
        images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2)
        return (TensorImage(images), *(target[indices] for target in self.targets))

    def decode(self, item: tuple, full: bool = True) -> tuple:
        """One item of a decoded batch, `(image, *targets)` (or predictions decoded as targets), as fastai shows it
        (`dls.show_batch`, `learn.show_results`, `dls.decode_batch`): the uint8 image (`GreyImage` when it has one
        channel), each single-label target as its class (`Category`), each multi-label one as its tags
        (`MultiCategory`, shown joined by ';'); fastai titles the image with one line per head."""
        image, *targets = item
        if image.shape[0] == 1:
            image = GreyImage(image)
        return (image, *(_label(head, target) for head, target in zip(self.heads, targets, strict=False)))


class GreyImage(TensorImage):
    """A one-channel image (a DICOM's), shown as grey levels on the fixed 0..255 scale of the decoded batch, as the
    model sees it: fastai's `TensorImageBW` draws it with 'Greys' (0 as white: a negative) and matplotlib would
    otherwise stretch each image to its own range."""

    _show_args = {"cmap": "gray", "vmin": 0, "vmax": 255}  # noqa: RUF012 (fastai's class attribute)


def _label(head: Head, target: torch.Tensor) -> Category | MultiCategory:
    """A head's target (a class index, or one 0/1 per tag) as fastai's shown label."""
    if head.kind == "single":
        return Category(head.vocab[int(target)])
    return MultiCategory([tag for tag, on in zip(head.vocab, target.tolist(), strict=True) if on])


class ToFloat(Transform):
    """Integer images to float 0..1 (uint8 / 255, uint16 / 65535), on the batch's device: fastai's IntToFloatTensor
    for both depths."""

    order = 10  # as IntToFloatTensor: before fastai's augmentation (30, 40) and Normalize (99)

    def encodes(self, x: TensorImage) -> TensorImage:
        return x.float().div_(65535 if x.dtype == torch.uint16 else 255)

    def decodes(self, x: TensorImage) -> TensorImage:
        return TensorImage((x.clamp(0, 1) * 255).round().byte())


def target_tensors(frame, heads) -> tuple[torch.Tensor, ...]:
    """One tensor per head: class indices (single-label) or multi-hot rows (multi-label), in vocabulary order."""
    targets = []
    for head in heads:
        index = {label: n for n, label in enumerate(head.vocab)}
        if head.kind == "single":
            targets.append(TensorCategory(torch.tensor([index[v] for v in frame[head.column]], dtype=torch.long)))
            continue
        hot = torch.zeros(len(frame), len(head.vocab))
        for row, value in enumerate(frame[head.column]):
            hot[row, [index[tag] for tag in str(value).split(" ") if tag]] = 1
        targets.append(TensorMultiCategory(hot))
    return tuple(targets)
