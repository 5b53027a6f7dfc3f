"""Predicting with a trained member folder alone: no pickles, no fastai Learner, no DataLoaders.

A member folder holds `model.safetensors` (weights only) and `member.json` (architecture, heads, input
channels, size, resize method, normalisation). The model is rebuilt with the same fastai/timm constructor
that training used, so the weight names match exactly, and images get fastai's *validation-time*
preprocessing: `Resize` (squish, centre crop or reflection pad, bilinear), /255, the member's augmentation
preset at validation time (a no-op for square sizes, a centre square crop for non-square sizes with
`min_scale` presets), then `Normalize`. Predictions therefore match `predict_member(learn, items, n_tta=0)`.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from fastai.data.core import Pipeline
from fastai.torch_core import TensorImage
from fastai.vision.learner import create_timm_model
from PIL import Image
from safetensors.torch import load_model
from torch import nn

from kagglekit.data.dicom import cache_dicoms
from kagglekit.data.images import DEFAULT_MAX_SIZE, open_grey16
from kagglekit.ensemble.combine import mean_probabilities
from kagglekit.ensemble.probabilities import Probabilities
from kagglekit.errors import DataError, DicomReadError
from kagglekit.train.augment import batch_transforms
from kagglekit.train.heads import Head, TaskLoss, place_heads


def resize(image: Image.Image, size: tuple[int, int], method: str) -> Image.Image:
    """fastai's `Resize(size, method)` at validation time, on a PIL image; `size` is (height, width).

    Same arithmetic as fastai's `Resize.encodes` and `crop_pad`: a centred window with the target's aspect
    ratio (inside the image for crop, around it for pad, the whole image for squish), reflection padding
    (fastai's default `pad_mode`, which training keeps), then a bilinear resize to the target.
    """
    height, width = size
    w, h = image.size
    if method == "squish":
        crop_w, crop_h, left, top = w, h, 0, 0
    else:
        scale = (max if method == "pad" else min)(w / width, h / height)
        crop_w, crop_h = int(scale * width), int(scale * height)
        left, top = int(0.5 * (w - crop_w)), int(0.5 * (h - crop_h))  # int() truncates towards 0, as fastai
    image = image.crop((max(left, 0), max(top, 0), min(left + crop_w, w), min(top + crop_h, h)))
    before = (max(-top, 0), max(-left, 0))
    after = (max(crop_h - h + top, 0), max(crop_w - w + left, 0))
    if any(before) or any(after):
        array = np.asarray(image)
        widths = [(before[0], after[0]), (before[1], after[1])] + [(0, 0)] * (array.ndim - 2)
        image = Image.fromarray(np.pad(array, widths, mode="reflect"))
    return image.resize((width, height), Image.Resampling.BILINEAR)


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

    def open(self, path: Path) -> Image.Image:
        """The image as training opened it: RGB for photos, the 16-bit cache as float 0..255 for grey members."""
        if self.channels == 1:
            return open_grey16(path)
        with Image.open(path) as image:
            return image.convert("RGB")

    def tensor(self, path: Path) -> torch.Tensor:
        """(channels, height, width) in 0..1: the item transforms of training's validation loader."""
        array = np.array(resize(self.open(path), self.size, self.resize), dtype=np.float32)
        array = array[:, :, None] if array.ndim == 2 else array
        return torch.from_numpy(array).permute(2, 0, 1) / 255

    def predict(self, paths: Sequence[Path], batch_size: int = 32) -> Probabilities:
        """Per-task probabilities (softmax for single-label heads, sigmoid for multi-label), ids = file names.

        DICOM files go through the same conversion as training's cache (full depth, longer side at most 512)
        in a temporary folder first; an undecodable one raises `DicomReadError` naming the file.
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
        with tempfile.TemporaryDirectory(prefix="kagglekit-dicom-") as tmp:
            readable = _decode_dicoms(paths, Path(tmp))
            for start in range(0, len(paths), batch_size):
                batch = torch.stack([self.tensor(readable[p]) for p in paths[start : start + batch_size]])
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


def _decode_dicoms(paths: Sequence[Path], folder: Path) -> dict[Path, Path]:
    """Each path, or for a `.dcm` its cached PNG in `folder` (the conversion `prepare_images` applies)."""
    dicoms = [p for p in paths if p.suffix.lower() == ".dcm"]
    if not dicoms:
        return {p: p for p in paths}
    report = cache_dicoms(dicoms, folder, max_size=DEFAULT_MAX_SIZE, workers=0)
    if report.failures:
        source, reason = next(iter(report.failures.items()))
        raise DicomReadError(source, reason)
    return {p: report.images.get(p, p) for p in paths}


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
