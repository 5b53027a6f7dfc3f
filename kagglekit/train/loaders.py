"""fastai DataLoaders over an item table: one image input, one target per head, optional weighted sampling."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
import torch
from fastai.data.block import CategoryBlock, ColReader, ColSplitter, DataBlock, MultiCategoryBlock
from fastai.vision.augment import Resize, ResizeMethod
from fastai.vision.core import PILImage
from fastai.vision.data import ImageBlock

from kagglekit.data.images import open_grey16
from kagglekit.errors import RecipeError
from kagglekit.recipe import Member, Stage
from kagglekit.train.augment import batch_transforms
from kagglekit.train.heads import Head

RESIZE = {"squish": ResizeMethod.Squish, "crop": ResizeMethod.Crop, "pad": ResizeMethod.Pad}


class PILImageGrey16(PILImage):
    """A cached 16-bit DICOM PNG as one float channel (see `kagglekit.data.images.open_grey16`)."""

    @classmethod
    def create(cls, fn, **kwargs):
        return cls(open_grey16(fn))


def make_dataloaders(
    train: pd.DataFrame,
    is_valid: pd.Series,
    heads: Sequence[Head],
    member: Member,
    num_workers: int | None = None,
    channels: int = 3,
    stage: Stage | None = None,
    weights: np.ndarray | None = None,
):
    """fastai DataLoaders over the item table: one image input, one target per head.

    `stage` sets the size and resize method (default: the member's last stage); `weights` (one per row of
    `train`) makes the training loader sample rows in proportion to them.
    """
    stage = stage or member.stage_list[-1]
    blocks = [ImageBlock(cls=PILImageGrey16) if channels == 1 else ImageBlock]
    getters = [ColReader("path")]
    for head in heads:
        if head.kind == "single":
            blocks.append(CategoryBlock(vocab=list(head.vocab)))
            getters.append(ColReader(head.column))
        else:
            blocks.append(MultiCategoryBlock(vocab=list(head.vocab)))
            getters.append(ColReader(head.column, label_delim=" "))
    block = DataBlock(
        blocks=blocks,
        getters=getters,
        n_inp=1,
        splitter=ColSplitter("is_valid"),
        item_tfms=Resize(stage.size, method=RESIZE[stage.resize]),
        batch_tfms=batch_transforms(member.aug, stage.size),
    )
    frame = train.assign(is_valid=is_valid.to_numpy())
    if num_workers is None and not torch.cuda.is_available():
        num_workers = 0  # on the CPU, loader processes fight the model's threads for the cores (5x slower on 2)
    kwargs = {} if num_workers is None else {"num_workers": num_workers}
    if weights is not None:
        return block.weighted_dataloaders(
            frame, wgts=np.asarray(weights, dtype=float), bs=member.step_batch_size, **kwargs
        )
    return block.dataloaders(frame, bs=member.step_batch_size, **kwargs)


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
