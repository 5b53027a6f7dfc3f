"""Pretrained weights from a local file (an attached Kaggle dataset, internet off), as timm loads them.

Cheap to import (no torch): `kagglekit kaggle pack-weights` and training share it.
"""

from __future__ import annotations

from pathlib import Path

from kagglekit.errors import RecipeError


def weights_file(pretrained: str, arch: str) -> Path:
    """A local weights file for `arch`: the file itself, or the first match in a folder (an attached dataset)."""
    path = Path(pretrained).expanduser()
    if path.is_dir():
        names = [f"{arch}.safetensors", f"{arch}/model.safetensors", f"{arch}/pytorch_model.bin", "model.safetensors"]
        found = next((path / n for n in names if (path / n).is_file()), None)
        if found is None:
            raise RecipeError(f"pretrained folder {path} has none of {', '.join(names)} for {arch}.")
        return found
    if not path.is_file():
        raise RecipeError(f"pretrained weights {path} do not exist (for {arch}).")
    return path


def timm_overlay(file: Path) -> dict:
    """timm's `pretrained_cfg_overlay` that loads `file` instead of downloading.

    `custom_load` is set from the file type: original .npz checkpoints need the model's own loader, and timm
    releases before 1.0.31 would otherwise send a .safetensors file of such a model (e.g. augreg ViTs) to it too
    (timm issue #2061).
    """
    return {"file": str(file), "custom_load": Path(file).suffix == ".npz"}
