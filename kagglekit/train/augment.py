"""Augmentation presets, named in recipes. The same transforms drive training and test-time augmentation."""

from __future__ import annotations

from collections.abc import Callable

from fastai.vision.augment import RandomResizedCropGPU, aug_transforms

Size = tuple[int, int]

# Recipes check preset names against kagglekit.recipe.AUGMENTATIONS, which lists these keys (a test keeps them equal).
PRESETS: dict[str, Callable[[Size], list]] = {
    # Nothing random: the image is only resized (by the member's resize method).
    "none": lambda size: [],
    # Horizontal flips only: for photos where rotation or lighting changes would change the class.
    "flip": lambda size: aug_transforms(size=size, max_rotate=0, max_zoom=1, max_lighting=0, max_warp=0),
    # fastai's standard photo augmentation with a random crop of at least 75% of the image.
    "default": lambda size: aug_transforms(size=size, min_scale=0.75),
    # Overhead imagery has no up or down: fastai's Dihedral (all 8 flips and 90-degree rotations) replaces
    # the horizontal flip when flip_vert is set; no perspective warp, which has no meaning from above.
    "overhead": lambda size: aug_transforms(size=size, flip_vert=True, max_warp=0, min_scale=0.75),
}


def batch_transforms(preset: str, size: Size) -> list:
    """The preset's batch transforms, with random crops at the target's aspect ratio.

    fastai's aug_transforms crops squares: for a non-square size such as (288, 224) that stretches every
    training crop and makes validation and test see a centre square stretched back. Cropping at the
    target's aspect ratio leaves the validation view exactly the resized image.
    """
    transforms = PRESETS[preset](size)  # a valid name: recipes check it when they are read
    for transform in transforms:
        if isinstance(transform, RandomResizedCropGPU):
            transform.ratio = (size[1] / size[0],) * 2
    return transforms
