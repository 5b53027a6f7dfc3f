"""A trained member rebuilt as the fastai Learner that predicted in its run, from its description (`member.json`) and
its weights (`model.safetensors`) alone: no pickles, no training data, no download.

The Learner is built by the code that built it for training: `make_dataloaders` (the same loaders fed from memory,
at the member's last size and resize method, and its batch size), `create_learner` (the same fastai/timm model, so
every weight name matches), the normalisation it was trained with, and `apply_precision` (precision by the GPU's
compute capability, memory layout, `compile` when the member asked, as in the run). `predict_member` on it is
therefore the run's own TTA, given images cached as training's were: `dls.cache_spec` holds the member's image cache
settings (`image_cache` in member.json) for whoever prepares new images.
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
from safetensors.torch import load_model

from kagglekit.data.cache import CacheSpec
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
    """A tiny image cache entry the loaders are built on (they need items to be made); never predicted."""
    path = folder / "placeholder.full.npy"
    array = np.zeros((8, 8), np.uint16) if channels == 1 else np.zeros((8, 8, 3), np.uint8)  # what the cache holds
    with path.open("wb") as f:
        np.save(f, array)
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
    rows = member.step_batch_size + 1  # a full training batch (what `compile` runs once) and a validation row
    with tempfile.TemporaryDirectory(prefix="kagglekit-member-") as tmp:
        image = str(_placeholder(Path(tmp), channels))
        frame = pd.DataFrame({"id": [str(n) for n in range(rows)], "path": [image] * rows,
                              **{h.column: [h.vocab[0]] * rows for h in heads}})  # fmt: skip
        is_valid = pd.Series([False] * (rows - 1) + [True])
        dls = make_dataloaders(frame, is_valid, heads, member, num_workers, channels, stage)
        learn = create_learner(dls, member, heads, channels)
    recorded = saved.get("image_cache")  # None: trained on the image files themselves
    dls.cache_spec = CacheSpec.from_dict(recorded) if recorded else None
    stats = saved["normalization"]  # what the run's batches were normalised with (None: inputs stay 0..1)
    if stats is not None:
        dls.add_tfms([Normalize.from_stats(stats["mean"], stats["std"])], "after_batch")
    load_model(learn.model, str(weights), strict=True)
    apply_precision(learn, member)
    return learn


def check_prepared(learn: Learner, items: pd.DataFrame) -> None:
    """Refuse images not prepared as the member's training images were: a member trained on image cache entries
    sees a raw file (or another cache size) resized differently, and would predict it slightly differently without
    a word. `prepare_test` (or `prepare_images` at the member's cover) makes the entries it needs."""
    spec = getattr(learn.dls, "cache_spec", None)
    if spec is None:
        return
    other = [p for p in items["path"] if not str(p).endswith(f".{spec.tag}.npy")]
    if other:
        raise DataError(f"{other[0]} is not an image cache entry made like this member's training images "
                        f"(<hash>.{spec.tag}.npy); prepare the images with kagglekit.predict.inputs.prepare_test "
                        "(or kagglekit.data.prepare_images at the member's cover) first.")  # fmt: skip


def load_member(folder: Path, num_workers: int | None = None) -> Learner:
    """A run's member folder (`member.json` + `model.safetensors`, as `train_member` leaves it) as its Learner."""
    return rebuild_learner(Path(folder) / "member.json", Path(folder) / "model.safetensors", num_workers)
