"""A trained member rebuilt as the fastai Learner that predicted in its run, from its description (`member.json`) and
its weights (`model.safetensors`) alone: no pickles, no training data, no download.

The Learner is built by the code that built it for training: `make_dataloaders` (the same item and batch transforms,
at the member's last size and resize method, and its batch size), `create_learner` (the same fastai/timm model, so
every weight name matches), the normalisation it was trained with, and `apply_precision` (mixed precision and memory
layout on CUDA, as in the run). `predict_member` on it is therefore the run's own TTA.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from fastai.data.transforms import Normalize
from fastai.learner import Learner
from PIL import Image
from safetensors.torch import load_model

from kagglekit.errors import DataError
from kagglekit.recipe import Member, Stage
from kagglekit.train.heads import place_heads
from kagglekit.train.learner import apply_precision, create_learner
from kagglekit.train.loaders import make_dataloaders


def saved_member(description: dict[str, Any]) -> Member:
    """The recipe member recorded in a `member.json` (JSON lists back to the tuples a recipe holds)."""
    fields = dict(description["member"])
    for key in ("size", "stages"):
        if isinstance(fields.get(key), list):
            fields[key] = tuple(fields[key])
    return Member(**fields)


def _placeholder(folder: Path, channels: int) -> Path:
    """A tiny image the loaders are built on (fastai opens one item to set them up); never predicted."""
    path = folder / "placeholder.png"
    array = np.zeros((8, 8), np.uint16) if channels == 1 else np.zeros((8, 8, 3), np.uint8)  # the DICOM cache's kind
    Image.fromarray(array).save(path)
    return path


def rebuild_learner(description: Path, weights: Path, num_workers: int | None = None) -> Learner:
    """The member's Learner from its description and weights files (strict: every weight must match)."""
    try:
        saved = json.loads(Path(description).read_text())
        member = replace(saved_member(saved), pretrained=False)  # the weights come from `weights`, never downloaded
    except (OSError, ValueError, KeyError, TypeError) as error:
        raise DataError(f"{description} does not describe a trained member ({error}).") from None
    heads = place_heads(saved["heads"])
    channels = int(saved["channels"])
    stage = Stage(tuple(saved["size"]), saved["resize"], 1, member.lr)
    with tempfile.TemporaryDirectory(prefix="kagglekit-member-") as tmp:
        image = str(_placeholder(Path(tmp), channels))
        frame = pd.DataFrame({"id": ["a", "b"], "path": [image, image], **{h.column: [h.vocab[0]] * 2 for h in heads}})
        dls = make_dataloaders(frame, pd.Series([False, True]), heads, member, num_workers, channels, stage)
        learn = create_learner(dls, member, heads, channels)
    stats = saved["normalization"]  # what the run's batches were normalised with (None: inputs stay 0..1)
    if stats is not None:
        dls.add_tfms([Normalize.from_stats(stats["mean"], stats["std"])], "after_batch")
    load_model(learn.model, str(weights), strict=True)
    apply_precision(learn, member)
    return learn


def load_member(folder: Path, num_workers: int | None = None) -> Learner:
    """A run's member folder (`member.json` + `model.safetensors`, as `train_member` leaves it) as its Learner."""
    return rebuild_learner(Path(folder) / "member.json", Path(folder) / "model.safetensors", num_workers)
