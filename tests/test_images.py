"""Grey 16-bit images reach the model at full depth: no 8-bit squash between the cache and the batch."""

import numpy as np
import pandas as pd
import torch
from PIL import Image

from kagglekit.data.images import open_grey16
from kagglekit.recipe import Member
from kagglekit.train import Head, make_dataloaders


def _ramp_png(path, high=65535):
    ramp = np.linspace(0, high, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(path)  # a uint16 array saves as a 16-bit greyscale PNG
    return ramp


def test_open_grey16_scales_without_losing_levels(tmp_path):
    ramp = _ramp_png(tmp_path / "ramp.png")
    image = open_grey16(tmp_path / "ramp.png")
    assert image.mode == "F"
    values = np.asarray(image)
    np.testing.assert_allclose(values, ramp.astype(np.float64) * 255 / 65535, rtol=1e-6)
    assert len(np.unique(values)) > 256


def test_a_batch_of_cached_dicoms_keeps_more_than_256_levels(tmp_path):
    rows = []
    for n in range(4):
        _ramp_png(tmp_path / f"{n}.png", high=4095 * 16)  # a 12-bit image scaled to 16 bits, as the cache does
        rows.append({"id": str(n), "path": str(tmp_path / f"{n}.png"), "label": "a" if n % 2 else "b"})
    train = pd.DataFrame(rows)
    member = Member(name="m", arch="resnet10t", size=64, aug="none", batch_size=2)
    head = Head("label", "label", "single", ("a", "b"), 1.0, 0)
    dls = make_dataloaders(train, pd.Series([False, False, True, True]), [head], member, num_workers=0, channels=1)
    x, _ = dls.valid.one_batch()
    assert x.shape == (2, 1, 64, 64) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1
    assert len(torch.unique(x[0])) > 256
