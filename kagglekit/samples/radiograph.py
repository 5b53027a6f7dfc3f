"""The painters' kit for radiograph samples: films drawn as attenuation layers, written as real DICOM files."""

from __future__ import annotations

import io
import logging
from collections.abc import Mapping
from typing import TYPE_CHECKING

from kagglekit._lazy import lazy_import

# numpy and Pillow load when a sample is drawn, not when a plug-in that uses this kit registers.
np = lazy_import("numpy")
Image = lazy_import("PIL.Image")
ImageDraw = lazy_import("PIL.ImageDraw")
ImageFilter = lazy_import("PIL.ImageFilter")

if TYPE_CHECKING:
    from pydicom.dataset import Dataset
    from pydicom.uid import UID


class Radiograph:
    """A radiograph drawn as attenuation layers: soft tissue, air inside the body (lungs, gas) and bone.

    Draw on `tissue`, `air` and `bone` (PIL ImageDraw, fill 0..255); `grey` blurs and combines them as an
    x-ray shows them, bone white and air black, with smooth exposure variation and noise, in float so that
    a 12-bit image really uses thousands of grey levels.
    """

    def __init__(self, size: tuple[int, int]) -> None:
        self.size = size
        self._layers = [Image.new("L", size) for _ in range(3)]
        self.tissue, self.air, self.bone = (ImageDraw.Draw(layer) for layer in self._layers)

    def grey(self, rng: np.random.Generator, blur: float = 1.2, noise: float = 0.015) -> np.ndarray:
        """The image as floats in 0..1 (1 = white), shape (height, width)."""
        blurred = (layer.filter(ImageFilter.GaussianBlur(blur)) for layer in self._layers)
        tissue, air, bone = (np.asarray(layer, dtype=np.float32) / 255 for layer in blurred)
        coarse = Image.fromarray(rng.normal(0, 0.04, (3, 3)).astype(np.float32))
        exposure = np.asarray(coarse.resize(self.size, Image.Resampling.BICUBIC), dtype=np.float32)
        grey = 0.05 + 0.4 * tissue * (1 - 0.85 * air) + 0.45 * bone + exposure
        return np.clip(grey * rng.uniform(0.85, 1.1) + rng.normal(0, noise, grey.shape), 0, 1)


def dicom_image(
    rng: np.random.Generator, grey: np.ndarray, photometric: str = "MONOCHROME2", bits_stored: int = 12,
    slope: float = 1.0, intercept: float = 0.0, transfer_syntax: UID | None = None, **elements: object,
) -> Dataset:  # fmt: skip
    """A single-frame DX image that displays `grey` (floats, 0 black .. 1 white) when decoded correctly.

    The stored values are `grey` quantised to `bits_stored` bits (8 allocated up to 8 bits, else 16), inverted
    for MONOCHROME1, so a reader that ignores the photometric interpretation sees a negative. A positive
    RescaleSlope keeps the image; the reader must still map the rescaled range, not the stored one.
    JPEG baseline (8 bits) is encoded with Pillow, as pydicom has no encoder for it; other syntaxes go
    through `Dataset.compress`; None stores it uncompressed. `elements` sets header keywords; the instance
    UIDs it does not set are drawn from `rng`.
    """
    from pydicom.dataset import Dataset, FileMetaDataset
    from pydicom.encaps import encapsulate
    from pydicom.uid import (
        DigitalXRayImageStorageForPresentation,
        ExplicitVRLittleEndian,
        JPEGBaseline8Bit,
        generate_uid,
    )

    top = 2**bits_stored - 1
    stored = np.rint(np.clip(grey, 0, 1) * top).astype(np.uint8 if bits_stored <= 8 else np.uint16)
    if photometric == "MONOCHROME1":
        stored = top - stored
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    for uid in ("StudyInstanceUID", "SeriesInstanceUID", "SOPInstanceUID"):
        setattr(ds, uid, generate_uid(entropy_srcs=[str(rng.integers(2**62))]))
    ds.Modality = "DX"
    ds.Rows, ds.Columns = stored.shape
    ds.SamplesPerPixel, ds.PhotometricInterpretation = 1, photometric
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = stored.itemsize * 8, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 0
    ds.RescaleSlope, ds.RescaleIntercept, ds.RescaleType = slope, intercept, "US"
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID
    if transfer_syntax == JPEGBaseline8Bit:
        if bits_stored != 8:
            raise ValueError("JPEG baseline stores 8 bits per pixel")
        buffer = io.BytesIO()
        Image.fromarray(stored).save(buffer, format="JPEG", quality=90)
        ds.PixelData = encapsulate([buffer.getvalue()])
        ds["PixelData"].VR = "OB"
        ds.file_meta.TransferSyntaxUID = transfer_syntax
        ds.LossyImageCompression = "01"
    else:
        ds.PixelData = stored.tobytes()
        if transfer_syntax not in (None, ExplicitVRLittleEndian):
            logging.getLogger("openjpeg").setLevel(logging.WARNING)  # it logs every encoded tile at INFO
            ds.compress(transfer_syntax, generate_instance_uid=False)  # the UID is the file's id
    return ds


_RESCALES = ((1.0, 0.0), (0.5, -1024.0), (2.0, 0.0), (1.0, -512.0), (0.25, 100.0))  # (slope, intercept)


def dicom_style(rng: np.random.Generator, syntaxes: Mapping[UID | None, float], monochrome1: float = 0.4) -> dict:
    """A random but correct encoding for `dicom_image`: a transfer syntax drawn with the given weights (12 bits
    stored in 16, or 8 for JPEG baseline), MONOCHROME1 with probability `monochrome1`, and a rescale."""
    from pydicom.uid import JPEGBaseline8Bit

    weights = np.array(list(syntaxes.values()), dtype=float)
    syntax = list(syntaxes)[rng.choice(len(syntaxes), p=weights / weights.sum())]
    slope, intercept = _RESCALES[rng.integers(len(_RESCALES))]
    return {
        "transfer_syntax": syntax, "bits_stored": 8 if syntax == JPEGBaseline8Bit else 12,
        "photometric": "MONOCHROME1" if rng.random() < monochrome1 else "MONOCHROME2",
        "slope": slope, "intercept": intercept,
    }  # fmt: skip
