"""Predicting with a trained member folder alone: no pickles, no fastai Learner, no DataLoaders.

A member folder holds `model.safetensors` (weights only) and `member.json` (architecture, heads, input
channels, size, resize method, normalisation, image cache settings). The model is rebuilt with the same
fastai/timm constructor that training used, so the weight names match exactly, and images get training's
*validation-time* preprocessing: the image cache with the member's settings, the centred view of its size
(`kagglekit.data.pixels.model_view`: squish, centre crop or reflection pad), /255 (/65535 for 16-bit grey),
the member's augmentation preset at validation time (a no-op), then `Normalize`. Predictions therefore match
`predict_member(learn, items, n_tta=0)`.
"""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from fastai.data.core import Pipeline
from fastai.torch_core import TensorImage
from fastai.vision.learner import create_timm_model
from safetensors.torch import load_model
from torch import nn

from kagglekit.data.cache import DICOM_SUFFIXES, CacheSpec, cache_images, load_cached
from kagglekit.data.pixels import model_view
from kagglekit.defaults import cache_root
from kagglekit.ensemble.combine import mean_probabilities
from kagglekit.ensemble.probabilities import Probabilities
from kagglekit.errors import DataError, DicomReadError, ImageReadError
from kagglekit.train.augment import batch_transforms
from kagglekit.train.heads import Head, TaskLoss, place_heads


@dataclass
class ExportedMember:
    """A trained member ready to predict image files, with the preprocessing it was validated with."""

    model: nn.Module
    heads: list[Head]
    channels: int
    size: tuple[int, int]  # (height, width)
    resize: str
    normalization: dict[str, list[float]] | None
    aug: str
    device: torch.device
    cache: CacheSpec  # how training's inputs were cached

    def tensor(self, entry: Path) -> torch.Tensor:
        """(channels, height, width) in 0..1 from a cache entry: the view of training's validation loader."""
        array = model_view(load_cached(entry), self.size, self.resize)
        scale = 65535 if array.dtype == np.uint16 else 255
        array = array[:, :, None] if array.ndim == 2 else array
        return torch.from_numpy(array.astype(np.float32)).permute(2, 0, 1) / scale

    def predict(self, paths: Sequence[Path], batch_size: int = 32) -> Probabilities:
        """Per-task probabilities (softmax for single-label heads, sigmoid for multi-label), ids = file names.

        Every file goes through the image cache with the member's settings first (as training's did); an
        unreadable one raises `ImageReadError` (`DicomReadError` for a DICOM) naming the file.
        """
        paths = [Path(p) for p in paths]
        if not paths:
            raise DataError("No images to predict.")
        batch_tfms = Pipeline(batch_transforms(self.aug, self.size), split_idx=1)
        activation = TaskLoss(self.heads).activation
        stats = None
        if self.normalization is not None:
            stats = [torch.tensor(self.normalization[k], device=self.device)[:, None, None] for k in ("mean", "std")]
        outputs = []
        entries = _cached(paths, self.cache)
        for start in range(0, len(paths), batch_size):
            batch = torch.stack([self.tensor(entries[p]) for p in paths[start : start + batch_size]])
            batch = batch_tfms(TensorImage(batch.to(self.device))).as_subclass(torch.Tensor)
            if stats is not None:
                batch = (batch - stats[0]) / stats[1]
            with torch.inference_mode():
                outputs.append(activation(self.model(batch)).cpu())
        array = torch.cat(outputs).numpy()
        return Probabilities(
            ids=[p.name for p in paths],
            tasks={h.task: array[:, h.slice] for h in self.heads},
            vocab={h.task: list(h.vocab) for h in self.heads},
        )


def _cached(paths: Sequence[Path], spec: CacheSpec) -> dict[Path, Path]:
    """Each path's entry in the user's image cache (the conversion `prepare_images` applies)."""
    report = cache_images(paths, cache_root() / "images", spec, workers=0)
    if report.failures:
        source, reason = next(iter(report.failures.items()))
        raise (DicomReadError if source.suffix.lower() in DICOM_SUFFIXES else ImageReadError)(source, reason)
    return report.images


def load_member(folder: Path, device: str | torch.device = "cpu") -> ExportedMember:
    """Rebuild a member from `model.safetensors` and `member.json` (strict: every weight must match)."""
    folder = Path(folder)
    saved = json.loads((folder / "member.json").read_text())
    heads = place_heads(saved["heads"])
    channels = int(saved["channels"])
    n_out = sum(len(h.vocab) for h in heads)
    model, _ = create_timm_model(saved["member"]["arch"], n_out, pretrained=False, n_in=channels)
    load_model(model, folder / "model.safetensors", strict=True)
    device = torch.device(device)
    return ExportedMember(
        model=model.to(device).eval(),
        heads=heads,
        channels=channels,
        size=(int(saved["size"][0]), int(saved["size"][1])),
        resize=saved["resize"],
        normalization=saved["normalization"],
        aug=saved["member"]["aug"],
        device=device,
        cache=CacheSpec.from_dict(saved.get("image_cache") or {"channels": channels, "frames": "first"}),
    )


def member_parts(member_dir: Path) -> list[Path]:
    """The trained models of a member folder: itself, or its `fold<k>` folders (k-fold members)."""
    if (member_dir / "member.json").is_file():
        return [member_dir]
    folds = sorted(p.parent for p in member_dir.glob("fold*/member.json"))
    if not folds:
        raise DataError(f"{member_dir} has no member.json (nor fold folders with one): not a finished member.")
    return folds


def _ensemble(run_dir: Path) -> list[tuple[Path, float]]:
    """(member folder, weight) of each member of the run's ensemble: those `ensemble/members.json` names (a run
    leaves broken members out), else every member folder with its recipe weight."""
    chosen = Path(run_dir) / "ensemble" / "members.json"
    if chosen.is_file():
        weights = json.loads(chosen.read_text())["weights"]
        return [(Path(run_dir) / "members" / name, float(weight)) for name, weight in weights.items()]
    member_dirs = sorted(p for p in (Path(run_dir) / "members").glob("*") if p.is_dir())
    return [(d, json.loads((member_parts(d)[0] / "member.json").read_text())["member"]["weight"]) for d in member_dirs]


def predict_run(
    run_dir: Path,
    paths: Sequence[Path],
    device: str | torch.device = "cpu",
    batch_size: int = 32,
    ids: Sequence[str] | None = None,
) -> Probabilities:
    """The run's ensemble for `paths`: each member of its ensemble (folds averaged) with the ensemble's weight.

    Members load one at a time, so memory holds one model whatever the size of the ensemble. Rows are named by
    `ids` (one per path), else by file name, and then two files of the same name are refused rather than
    silently merged.
    """
    if ids is None:
        repeated = sorted(name for name, count in Counter(Path(p).name for p in paths).items() if count > 1)
        if repeated:
            raise DataError(f"Image file names must be unique (they are the ids); repeated: {', '.join(repeated)}.")
        ids = [Path(p).name for p in paths]
    members = _ensemble(run_dir)
    if not members:
        raise DataError(f"{run_dir} has no trained members (expected {Path(run_dir) / 'members'}/<member>/).")
    predictions = []
    for member_dir, _ in members:
        parts = [load_member(part, device).predict(paths, batch_size) for part in member_parts(member_dir)]
        predictions.append(mean_probabilities([Probabilities(list(ids), p.tasks, p.vocab) for p in parts]))
    return mean_probabilities(predictions, [weight for _, weight in members])
