"""Augmentation presets, named in recipes. The same transforms drive training and test-time augmentation.

Each preset is a set of fastai `aug_transforms` settings, applied where the batch is:

- on a GPU, fastai's batch transforms on the float batch (`batch_transforms`): the CPU only gathers uint8 images;
- on the CPU, `CpuAugment` draws the same random transforms per image, from fastai's own distributions, and
  applies them to the small uint8 image in one Pillow resampling (the random crop, flip or dihedral, rotation,
  zoom and warp composed into one perspective transform, reflection padding outside the image) and one lookup
  table (brightness and contrast in logit space, fastai's formulas), before the batch becomes float. fastai's
  float32 `grid_sample` over the batch is otherwise half the cost of an augmented pass on two cores. One
  difference: fastai draws one random crop per batch, `CpuAugment` one per image.
"""

from __future__ import annotations

import inspect
import math

import numpy as np
from fastai.vision.augment import RandomResizedCropGPU, aug_transforms
from PIL import Image

from kagglekit.data.pixels import GREY_MAX, Size, reflect_pad

# Recipes check preset names against kagglekit.recipe.AUGMENTATIONS, which lists these keys (a test keeps them equal).
PRESETS: dict[str, dict | None] = {
    # Nothing random: the image is only resized (by the member's resize method).
    "none": None,
    # Horizontal flips only: for photos where rotation or lighting changes would change the class.
    "flip": {"max_rotate": 0, "max_zoom": 1, "max_lighting": 0, "max_warp": 0},
    # fastai's standard photo augmentation with a random crop of at least 75% of the image.
    "default": {"min_scale": 0.75},
    # Overhead imagery has no up or down: fastai's Dihedral (all 8 flips and 90-degree rotations) replaces
    # the horizontal flip when flip_vert is set; no perspective warp, which has no meaning from above.
    "overhead": {"flip_vert": True, "max_warp": 0, "min_scale": 0.75},
}
_DEFAULTS = {k: p.default for k, p in inspect.signature(aug_transforms).parameters.items()}
# fastai's dihedral_mat: for each of the 8 elements, the signs of x and y and whether the axes swap.
_DIHEDRAL_XS, _DIHEDRAL_YS = (1, -1, 1, -1, -1, 1, 1, -1), (1, 1, -1, 1, -1, -1, 1, -1)
_DIHEDRAL_SWAP = (0, 0, 0, 1, 0, 1, 1, 1)


def settings(preset: str) -> dict | None:
    """The preset's complete `aug_transforms` settings (fastai's defaults filled in); None for `none`."""
    chosen = PRESETS[preset]  # a valid name: recipes check it when they are read
    return None if chosen is None else {**_DEFAULTS, **chosen}


def batch_transforms(preset: str, size: Size) -> list:
    """The preset's fastai batch transforms, with random crops at the target's aspect ratio.

    fastai's aug_transforms crops squares: for a non-square size such as (288, 224) that stretches every
    training crop and makes validation and test see a centre square stretched back. Cropping at the
    target's aspect ratio leaves the validation view exactly the resized image.
    """
    if PRESETS[preset] is None:
        return []
    transforms = aug_transforms(size=size, **PRESETS[preset])
    for transform in transforms:
        if isinstance(transform, RandomResizedCropGPU):
            transform.ratio = (size[1] / size[0],) * 2
    return transforms


class CpuAugment:
    """One preset's random augmentation of single images on the CPU, in uint8 (or uint16 grey) throughout.

    `augment(image, rng)` takes an image of the member's size (height, width) and returns one of the same size.
    """

    def __init__(self, preset: str, size: Size):
        self.size, self.settings = size, settings(preset)

    def __call__(self, image: np.ndarray, rng: np.random.Generator) -> np.ndarray:
        if self.settings is None:
            return image
        matrix = self._geometry(rng)
        if not np.allclose(matrix, np.eye(3)):
            image = _transform(image, matrix, self.size)
        brightness, contrast = self._lighting(rng)
        if (brightness, contrast) != (0.0, 1.0):
            image = _lighting(image, brightness, contrast)
        return image

    def _geometry(self, rng: np.random.Generator) -> np.ndarray:
        """Output pixel -> source pixel, as fastai composes it: crop, then [flip/dihedral . rotate . zoom], warp."""
        s, (height, width) = self.settings, self.size
        p = s["p_affine"]
        affine = np.eye(3)
        if s["do_flip"] and s["flip_vert"]:
            k = int(rng.integers(8)) if rng.random() < 0.5 else 0
            xs, ys, swap = _DIHEDRAL_XS[k], _DIHEDRAL_YS[k], _DIHEDRAL_SWAP[k]
            affine = affine @ np.array([[xs * (1 - swap), xs * swap, 0], [ys * swap, ys * (1 - swap), 0], [0, 0, 1]])
        elif s["do_flip"] and rng.random() < 0.5:
            affine = affine @ np.diag([-1.0, 1.0, 1.0])
        rotate = s["max_rotate"] * s["mult"]
        if rotate and rng.random() < p:
            theta = math.radians(rng.uniform(-rotate, rotate))
            affine = affine @ np.array([[math.cos(theta), math.sin(theta), 0], [-math.sin(theta), math.cos(theta), 0],
                                        [0, 0, 1]])  # fmt: skip
        if s["min_zoom"] < 1 or s["max_zoom"] > 1:
            scale = 1 / rng.uniform(s["min_zoom"], s["max_zoom"]) if rng.random() < p else 1.0
            column, row = rng.uniform(0, 1, 2)
            affine = affine @ np.array([[scale, 0, (1 - scale) * (2 * column - 1)],
                                        [0, scale, (1 - scale) * (2 * row - 1)], [0, 0, 1]])  # fmt: skip
        warp = s["max_warp"] * s["mult"]
        if warp:
            x_t, y_t = (rng.uniform(-warp, warp) if rng.random() < p else 0.0 for _ in range(2))
            corners = [(-1, -1), (-1, 1), (1, -1), (1, 1)]
            targets = [(-1 - y_t, -1 - x_t), (-1 + y_t, 1 + x_t), (1 + y_t, -1 + x_t), (1 - y_t, 1 - x_t)]
            affine = _homography(targets, corners) @ affine
        to_unit = np.array([[2 / width, 0, -1], [0, 2 / height, -1], [0, 0, 1]])  # pixels -> [-1, 1]
        return np.linalg.inv(to_unit) @ affine @ to_unit @ self._crop(rng)

    def _crop(self, rng: np.random.Generator) -> np.ndarray:
        """fastai's RandomResizedCropGPU at the target's aspect: a window of min_scale..1 of the area, anywhere."""
        (height, width), min_scale = self.size, self.settings["min_scale"]
        if min_scale >= 1:
            return np.eye(3)
        share = math.sqrt(rng.uniform(min_scale, 1))
        crop_h, crop_w = height * share, width * share
        top, left = rng.uniform(0, height - crop_h), rng.uniform(0, width - crop_w)
        return np.array([[share, 0, left], [0, share, top], [0, 0, 1]])

    def _lighting(self, rng: np.random.Generator) -> tuple[float, float]:
        """fastai's Brightness and Contrast draws: a logit-space shift and scale (neutral 0 and 1)."""
        lighting, p = self.settings["max_lighting"] * self.settings["mult"], self.settings["p_lighting"]
        if not lighting:
            return 0.0, 1.0
        change = rng.uniform(0.5 * (1 - lighting), 0.5 * (1 + lighting)) if rng.random() < p else 0.5
        contrast = math.exp(rng.uniform(math.log(1 - lighting), -math.log(1 - lighting))) if rng.random() < p else 1.0
        return math.log(change / (1 - change)), contrast


def _homography(source: list[tuple[float, float]], target: list[tuple[float, float]]) -> np.ndarray:
    """The 3x3 perspective transform taking the four `source` points to the four `target` points."""
    rows, values = [], []
    for (x, y), (u, v) in zip(source, target, strict=True):
        rows += [[x, y, 1, 0, 0, 0, -u * x, -u * y], [0, 0, 0, x, y, 1, -v * x, -v * y]]
        values += [u, v]
    return np.append(np.linalg.solve(np.array(rows), np.array(values)), 1.0).reshape(3, 3)


def _transform(image: np.ndarray, matrix: np.ndarray, size: Size) -> np.ndarray:
    """Resample `image` through `matrix` (output pixel -> source pixel), reflecting where it leaves the image."""
    height, width = size
    corners = matrix @ np.array([[0, width, 0, width], [0, 0, height, height], [1, 1, 1, 1]], dtype=float)
    xs, ys = corners[0] / corners[2], corners[1] / corners[2]
    h, w = image.shape[:2]
    pad_top, pad_left = max(0, math.ceil(-ys.min()) + 1), max(0, math.ceil(-xs.min()) + 1)
    pad_bottom, pad_right = max(0, math.ceil(ys.max() - h) + 1), max(0, math.ceil(xs.max() - w) + 1)
    if pad_top or pad_left or pad_bottom or pad_right:
        image = reflect_pad(image, [(pad_top, pad_bottom), (pad_left, pad_right)] + [(0, 0)] * (image.ndim - 2))
        matrix = np.array([[1, 0, pad_left], [0, 1, pad_top], [0, 0, 1]]) @ matrix
    matrix = matrix / matrix[2, 2]
    grey = image.dtype == np.uint16
    source = Image.fromarray(image.astype(np.float32) if grey else image)
    out = np.asarray(source.transform((width, height), Image.Transform.PERSPECTIVE, tuple(matrix.flat[:8]),
                                      Image.Resampling.BILINEAR))  # fmt: skip
    return np.clip(np.rint(out), 0, GREY_MAX).astype(np.uint16) if grey else out


def _lighting(image: np.ndarray, brightness: float, contrast: float) -> np.ndarray:
    """sigmoid((logit(x) + brightness) * contrast), fastai's order, through a lookup table of every level."""
    top = GREY_MAX if image.dtype == np.uint16 else 255
    levels = np.clip(np.arange(top + 1, dtype=np.float64) / top, 1e-7, 1 - 1e-7)
    shifted = (np.log(levels / (1 - levels)) + brightness) * contrast
    table = np.rint(top / (1 + np.exp(-shifted))).astype(image.dtype)
    return table[image]
