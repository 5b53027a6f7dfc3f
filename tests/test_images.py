"""Photos reach the model upright and unclipped in every mode Pillow opens; grey images keep all 16 bits."""

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image, ImageCms

from kagglekit.data.cache import CacheSpec, cache_images, load_cached, load_image
from kagglekit.data.photos import read_photo
from kagglekit.data.pixels import cover_size, fitted, model_view, to_channels, window
from kagglekit.errors import ImageReadError
from kagglekit.recipe import Member
from kagglekit.train import Head, make_dataloaders


def _picture(height=48, width=64) -> np.ndarray:
    """An RGB picture whose quadrants differ (a rotation or flip shows) with smooth ramps inside."""
    y, x = np.mgrid[0:height, 0:width]
    rgb = np.stack([x * 255 // (width - 1), y * 255 // (height - 1), np.full_like(x, 60)], axis=-1)
    rgb[: height // 2, : width // 2] = (250, 20, 20)  # top-left red
    return rgb.astype(np.uint8)


def _ramp16(path, high=65535) -> np.ndarray:
    ramp = np.linspace(0, high, 64 * 64).reshape(64, 64).astype(np.uint16)
    Image.fromarray(ramp).save(path)  # a uint16 array saves as a 16-bit greyscale PNG
    return ramp


# --- modes -------------------------------------------------------------------------------------------


def test_16_bit_grey_is_scaled_not_clipped_to_white(tmp_path):
    ramp = _ramp16(tmp_path / "ramp.png")
    assert Image.open(tmp_path / "ramp.png").mode == "I;16"
    assert np.asarray(Image.open(tmp_path / "ramp.png").convert("RGB")).mean() > 250  # what Pillow alone gives
    rgb = read_photo(tmp_path / "ramp.png").image
    assert rgb.dtype == np.uint8 and rgb.shape == (64, 64, 3)
    np.testing.assert_array_equal(rgb[..., 0], np.rint(ramp / 257).astype(np.uint8))
    grey = read_photo(tmp_path / "ramp.png", channels=1).image
    np.testing.assert_array_equal(grey, ramp)  # one-channel models keep every level
    assert len(np.unique(grey)) > 256


def test_8_and_16_bit_copies_of_one_picture_give_the_same_input(tmp_path):
    eight = (np.linspace(0, 255, 48 * 64).reshape(48, 64)).astype(np.uint8)
    Image.fromarray(eight).save(tmp_path / "8.png")
    Image.fromarray(eight.astype(np.uint16) * 257).save(tmp_path / "16.png")
    np.testing.assert_array_equal(read_photo(tmp_path / "8.png").image, read_photo(tmp_path / "16.png").image)
    np.testing.assert_array_equal(
        read_photo(tmp_path / "8.png", channels=1).image, read_photo(tmp_path / "16.png", channels=1).image
    )


def test_32_bit_integer_and_float_images(tmp_path):
    ramp = _ramp16(tmp_path / "ramp.png")
    Image.fromarray(ramp.astype(np.int32)).save(tmp_path / "i.tif")
    assert Image.open(tmp_path / "i.tif").mode == "I"
    np.testing.assert_array_equal(read_photo(tmp_path / "i.tif", channels=1).image, ramp)  # 16-bit data in I

    unit = ramp.astype(np.float32) / 65535
    Image.fromarray(unit).save(tmp_path / "f.tif")
    decoded = read_photo(tmp_path / "f.tif", channels=1)
    assert decoded.note is None and np.abs(decoded.image.astype(int) - ramp).max() <= 1  # 0..1 floats

    Image.fromarray(unit * 1000 - 500).save(tmp_path / "hdr.tif")  # no known range: stretched, and said so
    stretched = read_photo(tmp_path / "hdr.tif")
    assert "stretched" in stretched.note and "-500..500" in stretched.note
    assert stretched.image.min() == 0 and stretched.image.max() == 255


def test_transparency_is_composited_over_white(tmp_path):
    rgba = np.zeros((8, 8, 4), np.uint8)
    rgba[..., 0], rgba[:4, :, 3] = 200, 255  # top half opaque red, bottom half transparent
    Image.fromarray(rgba, "RGBA").save(tmp_path / "rgba.png")
    out = read_photo(tmp_path / "rgba.png").image
    assert tuple(out[0, 0]) == (200, 0, 0) and tuple(out[-1, -1]) == (255, 255, 255)

    la = Image.new("LA", (8, 8), (30, 0))  # fully transparent grey
    la.save(tmp_path / "la.png")
    assert (read_photo(tmp_path / "la.png").image == 255).all()

    palette = Image.new("P", (8, 8), 0)
    palette.putpalette([0, 0, 0, 10, 200, 10])
    palette.paste(1, (0, 0, 4, 8))
    palette.save(tmp_path / "p.png", transparency=0)  # index 0 (black) is transparent
    out = read_photo(tmp_path / "p.png").image
    assert tuple(out[0, 0]) == (10, 200, 10) and tuple(out[0, -1]) == (255, 255, 255)


def test_cmyk_with_and_without_an_icc_profile(tmp_path):
    Image.new("CMYK", (8, 8), (255, 0, 0, 0)).save(tmp_path / "cyan.jpg", quality=95)
    plain = read_photo(tmp_path / "cyan.jpg").image
    assert plain[..., 0].max() < 20 and plain[..., 1:].min() > 235  # cyan, not red (an inverted CMYK)
    srgb = ImageCms.ImageCmsProfile(ImageCms.createProfile("sRGB")).tobytes()
    Image.new("CMYK", (8, 8), (255, 0, 0, 0)).save(tmp_path / "icc.jpg", quality=95, icc_profile=srgb)
    assert read_photo(tmp_path / "icc.jpg").image.shape == (8, 8, 3)  # an unusable profile falls back quietly


def test_colour_to_grey_and_grey_to_colour():
    rgb = _picture()
    grey = to_channels(rgb, 1)
    assert grey.dtype == np.uint16
    np.testing.assert_allclose(grey / 257, rgb @ [0.299, 0.587, 0.114], atol=0.51)
    np.testing.assert_array_equal(to_channels(grey, 3)[..., 2], np.rint(grey / 257).astype(np.uint8))


# --- orientation and DCT-scaled decoding ----------------------------------------------------------------


def _with_orientation(array: np.ndarray, path, orientation: int, fmt: str = "PNG") -> None:
    image = Image.fromarray(array)
    exif = image.getexif()
    exif[0x0112] = orientation
    image.save(path, format=fmt, exif=exif, **({"quality": 95} if fmt == "JPEG" else {}))


@pytest.mark.parametrize(("orientation", "upright"), [
    (3, lambda a: a[::-1, ::-1]), (6, lambda a: np.rot90(a, -1)), (8, lambda a: np.rot90(a, 1)),
    (2, lambda a: a[:, ::-1]),
])  # fmt: skip
def test_exif_orientation_is_applied_once(tmp_path, orientation, upright):
    stored = _picture()
    _with_orientation(stored, tmp_path / "o.png", orientation)
    np.testing.assert_array_equal(read_photo(tmp_path / "o.png").image, upright(stored))
    # the cache (training, TTA, predict all read it) holds the upright image too, exactly once turned
    report = cache_images([tmp_path / "o.png"], tmp_path / "cache", CacheSpec(None), workers=0)
    np.testing.assert_array_equal(load_cached(report.images[tmp_path / "o.png"]), upright(stored))


def test_jpeg_decodes_at_the_smallest_dct_scale_that_covers_the_size(tmp_path):
    stored = np.kron(_picture(60, 80), np.ones((8, 8, 1), np.uint8))  # 480 x 640
    Image.fromarray(stored).save(tmp_path / "big.jpg", quality=95)
    assert read_photo(tmp_path / "big.jpg", cover=(100, 100)).image.shape == (120, 160, 3)  # 1/4 scale covers
    assert read_photo(tmp_path / "big.jpg", cover=(130, 100)).image.shape == (240, 320, 3)  # 1/4 would not
    _with_orientation(stored, tmp_path / "turned.jpg", 6, "JPEG")  # stored 480 x 640, upright 640 x 480
    turned = read_photo(tmp_path / "turned.jpg", cover=(150, 100)).image
    assert turned.shape == (160, 120, 3)  # the cover is compared with the upright image, not the stored one
    report = cache_images([tmp_path / "big.jpg"], tmp_path / "cache", CacheSpec((100, 100)), workers=0)
    assert load_cached(report.images[tmp_path / "big.jpg"]).shape == (100, 133, 3)  # then shrunk to cover


# --- unreadable files --------------------------------------------------------------------------------


def test_broken_photos_become_reasons_not_crashes(tmp_path):
    Image.fromarray(_picture()).save(tmp_path / "good.jpg")
    data = (tmp_path / "good.jpg").read_bytes()
    (tmp_path / "half.jpg").write_bytes(data[: len(data) // 2])
    (tmp_path / "empty.jpg").write_bytes(b"")
    (tmp_path / "text.png").write_text("not an image")
    report = cache_images(sorted(tmp_path.glob("*.*")), tmp_path / "cache", CacheSpec((32, 32)), workers=0)
    assert set(report.images) == {tmp_path / "good.jpg"}
    assert "truncated" in report.failures[tmp_path / "half.jpg"].lower()
    assert "cannot identify image file" in report.failures[tmp_path / "empty.jpg"]
    assert set(report.failures) == {tmp_path / n for n in ("half.jpg", "empty.jpg", "text.png")}
    with pytest.raises(ImageReadError, match="half.jpg: not a readable image: .*[Tt]runcated"):
        load_image(tmp_path / "half.jpg")


# --- geometry ------------------------------------------------------------------------------------------


def test_cover_size_keeps_aspect_and_never_enlarges():
    assert cover_size((640, 480), (224, 224)) == (299, 224)
    assert cover_size((480, 640), (288, 224)) == (288, 384)
    assert cover_size((100, 80), (224, 224)) == (100, 80)
    assert cover_size((640, 480), None) == (640, 480)


def test_fitted_window_for_each_resize_method():
    image = np.arange(60 * 80, dtype=np.uint16).reshape(60, 80)  # wider than tall
    assert fitted(image, (30, 30), "squish").shape == (30, 30)
    assert fitted(image, (30, 30), "crop").shape == (30, 40)  # covers: room to crop along the width
    assert fitted(image, (30, 30), "pad").shape == (22, 30)  # fits inside
    crop = fitted(image, (30, 30), "crop")
    np.testing.assert_array_equal(window(crop, (30, 30), (0.0, 0.0)), crop[:, :30])
    np.testing.assert_array_equal(window(crop, (30, 30), (0.5, 1.0)), crop[:, 10:])
    padded = model_view(image, (30, 30), "pad")
    assert padded.shape == (30, 30)
    np.testing.assert_array_equal(padded[4:26], fitted(image, (30, 30), "pad"))
    np.testing.assert_array_equal(padded[3], padded[5])  # reflection padding, as fastai's Resize
    tiny = np.arange(6, dtype=np.uint8).reshape(1, 6)
    assert window(tiny, (5, 6)).shape == (5, 6)  # a one-row image cannot reflect: its edge repeats


# --- through the loaders ---------------------------------------------------------------------------------


def test_a_batch_of_16_bit_grey_images_keeps_more_than_256_levels(tmp_path):
    rows = []
    for n in range(4):
        _ramp16(tmp_path / f"{n}.png", high=4095 * 16)  # a 12-bit image scaled to 16 bits, as the cache does
        rows.append({"id": str(n), "path": str(tmp_path / f"{n}.png"), "label": "a" if n % 2 else "b"})
    train = pd.DataFrame(rows)
    member = Member(name="m", arch="resnet10t", size=64, aug="none", batch_size=2)
    head = Head("label", "label", "single", ("a", "b"), 1.0, 0)
    dls = make_dataloaders(train, pd.Series([False, False, True, True]), [head], member, num_workers=0, channels=1)
    x, _ = dls.valid.one_batch()
    assert x.shape == (2, 1, 64, 64) and x.dtype == torch.float32
    assert x.min() >= 0 and x.max() <= 1
    assert len(torch.unique(x[0])) > 256


def test_exif_orientation_is_the_same_in_training_and_prediction(tmp_path):
    """The loaders (training, TTA) and the exported member's view (predict) read the same upright cache entry."""
    _with_orientation(_picture(), tmp_path / "o.jpg", 6, "JPEG")
    report = cache_images([tmp_path / "o.jpg"], tmp_path / "cache", CacheSpec((32, 32)), workers=0)
    entry = report.images[tmp_path / "o.jpg"]
    member = Member(name="m", arch="resnet10t", size=32, resize="crop", aug="none", batch_size=1)
    head = Head("label", "label", "single", ("a",), 1.0, 0)
    train = pd.DataFrame({"id": ["t", "o"], "path": [str(entry)] * 2, "label": ["a"] * 2})
    dls = make_dataloaders(train, pd.Series([False, True]), [head], member, num_workers=0)
    x, _ = dls.valid.one_batch()
    expected = model_view(load_cached(entry), (32, 32), "crop")
    np.testing.assert_allclose(x[0].permute(1, 2, 0).numpy(), expected / 255, atol=1e-6)
    assert load_cached(entry).shape[0] > load_cached(entry).shape[1]  # stored landscape, upright portrait


def test_16_bit_per_channel_rgb_png_keeps_its_colours(tmp_path):
    """Written by hand (Pillow cannot write it): 16 bits per channel, which Pillow reads as 8-bit RGB, top bytes."""
    import struct
    import zlib

    rgb16 = np.stack([np.full((4, 6), v, np.uint16) for v in (65535, 32896, 257)], axis=-1)
    raw = b"".join(b"\x00" + row.astype(">u2").tobytes() for row in rgb16)

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", 6, 4, 16, 2, 0, 0, 0)  # 6 x 4, 16 bits, colour type 2 (RGB)
    png = b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b"")
    (tmp_path / "rgb16.png").write_bytes(png)
    assert tuple(read_photo(tmp_path / "rgb16.png").image[0, 0]) == (255, 128, 1)  # not clipped to white
