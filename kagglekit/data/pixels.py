"""Pixel arrays as models take them: channel and depth conversions, resizing that keeps every grey level, and
the one geometry (squish, crop or pad) that training, TTA and exported members share.

Images are numpy arrays: uint8 (H, W, 3) RGB, or uint16 (H, W) grey at full depth (one-channel competitions).
Sizes are (height, width), as in recipes.
"""

from __future__ import annotations

import math
from typing import Literal, NamedTuple

import numpy as np
from PIL import Image

ResizeMethod = Literal["squish", "crop", "pad"]
Size = tuple[int, int]

GREY_MAX = 65535
# ITU-R 601-2 luma, the weights of Pillow's convert("L"): colour reaches a one-channel model as its brightness.
LUMA = np.array([0.299, 0.587, 0.114], dtype=np.float32)


class Decoded(NamedTuple):
    """A decoded image and, when something about it had to be guessed, a one-line note saying what."""

    image: np.ndarray
    note: str | None = None


def top_byte(grey16: np.ndarray) -> np.ndarray:
    """uint16 0..65535 -> uint8 0..255, rounded (x / 257): white stays white, nothing is clipped."""
    return np.rint(grey16 / 257.0).astype(np.uint8)


def to_channels(image: np.ndarray, channels: int) -> np.ndarray:
    """An RGB uint8 or grey uint16 image as the model's input: RGB uint8 (channels 3) or grey uint16 (channels 1).

    Grey becomes RGB by repeating its top byte; RGB becomes grey as its luma at 16 bits (x 257 per 8-bit level).
    """
    colour = image.ndim == 3
    if channels == 3:
        return image if colour else np.repeat(top_byte(image)[..., None], 3, axis=2)
    if not colour:
        return image
    return np.rint((image.astype(np.float32) @ LUMA) * 257.0).astype(np.uint16)


def mosaic(frames: np.ndarray) -> np.ndarray:
    """(F, H, W[, 3]) frames tiled row by row into one near-square grid (ceil(sqrt(F)) columns, empty cells black).

    One image per file, whatever its number of frames, with every frame at the same scale and aspect.
    """
    count, height, width = frames.shape[:3]
    columns = math.ceil(math.sqrt(count))
    rows = math.ceil(count / columns)
    grid = np.zeros((rows * height, columns * width, *frames.shape[3:]), dtype=frames.dtype)
    for n, frame in enumerate(frames):
        row, column = divmod(n, columns)
        grid[row * height : (row + 1) * height, column * width : (column + 1) * width] = frame
    return grid


def resize(image: np.ndarray, size: Size, resample: Image.Resampling = Image.Resampling.BILINEAR) -> np.ndarray:
    """`image` resized to `size` (height, width). Pillow's filters widen with the scale (antialiased); uint16 grey is
    resampled in float, so no grey level is lost to 8 bits."""
    height, width = size
    if image.shape[:2] == (height, width):
        return image
    if image.dtype == np.uint8:
        return np.asarray(Image.fromarray(image).resize((width, height), resample, reducing_gap=3.0))
    resized = Image.fromarray(image.astype(np.float32)).resize((width, height), resample, reducing_gap=3.0)
    return np.clip(np.rint(np.asarray(resized)), 0, GREY_MAX).astype(np.uint16)


def cover_size(shape: tuple[int, ...], cover: Size | None) -> Size:
    """The smallest size with the image's aspect whose height and width are both at least `cover` (never larger
    than the image: it is never enlarged). `cover=None` keeps the full size."""
    height, width = shape[:2]
    if cover is None:
        return height, width
    scale = max(cover[0] / height, cover[1] / width)
    if scale >= 1:
        return height, width
    return max(cover[0], round(height * scale)), max(cover[1], round(width * scale))


def shrink(image: np.ndarray, cover: Size | None) -> np.ndarray:
    """`image` shrunk (Lanczos) to `cover_size`: what a cache entry keeps."""
    return resize(image, cover_size(image.shape, cover), Image.Resampling.LANCZOS)


def fitted(image: np.ndarray, size: Size, method: ResizeMethod) -> np.ndarray:
    """The image at the scale `method` needs for `size` (height, width), aspect kept except for squish.

    squish: exactly `size`. crop: covers `size` (one side equal, the other longer: room for random crops).
    pad: fits inside `size` (one side equal, the other shorter). `window` then cuts or pads it to `size`.
    Bilinear and antialiased, like fastai's `Resize`.
    """
    height, width = image.shape[:2]
    if method == "squish":
        return resize(image, size)
    pick = max if method == "crop" else min
    scale = pick(size[0] / height, size[1] / width)
    scaled = (round(height * scale), round(width * scale))
    if method == "crop":
        scaled = (max(scaled[0], size[0]), max(scaled[1], size[1]))
    else:
        scaled = (max(1, min(scaled[0], size[0])), max(1, min(scaled[1], size[1])))
    return resize(image, scaled)


def window(image: np.ndarray, size: Size, position: tuple[float, float] = (0.5, 0.5)) -> np.ndarray:
    """A `size` (height, width) window of a `fitted` image: cut from a larger one, or the image placed in a
    reflection-padded frame (fastai's default padding) for a smaller one. `position` (row, column fractions)
    places it: (0.5, 0.5) centred (validation, TTA's plain pass, prediction), random while training.
    """
    height, width = image.shape[:2]
    top = int(position[0] * (height - size[0]))  # negative when padding: the image sits inside the frame
    left = int(position[1] * (width - size[1]))  # (int() truncates towards 0, as fastai's Resize does)
    if top >= 0 and left >= 0 and top + size[0] <= height and left + size[1] <= width:
        return image[top : top + size[0], left : left + size[1]]
    inside = image[max(top, 0) : max(top, 0) + size[0], max(left, 0) : max(left, 0) + size[1]]
    before = (max(-top, 0), max(-left, 0))
    after = (size[0] - inside.shape[0] - before[0], size[1] - inside.shape[1] - before[1])
    pads = [(before[0], after[0]), (before[1], after[1])] + [(0, 0)] * (image.ndim - 2)
    return reflect_pad(inside, pads)


def reflect_pad(image: np.ndarray, pads: list[tuple[int, int]]) -> np.ndarray:
    """np.pad's reflection, repeated while a pad is wider than the image (tiny images in wide frames)."""
    while any(b or a for b, a in pads[:2]):
        step = [(min(b, n - 1), min(a, n - 1)) for (b, a), n in zip(pads[:2], image.shape[:2], strict=True)]
        if step == [(0, 0), (0, 0)]:  # a one-pixel side cannot reflect: repeat it
            return np.pad(image, pads, mode="edge")
        image = np.pad(image, step + pads[2:], mode="reflect")
        pads = [(b - sb, a - sa) for (b, a), (sb, sa) in zip(pads[:2], step, strict=True)] + pads[2:]
    return image


def model_view(image: np.ndarray, size: Size, method: ResizeMethod) -> np.ndarray:
    """What a model of `size` sees of a cached image at validation and prediction time: `fitted`, centred `window`."""
    return window(fitted(image, size, method), size)
