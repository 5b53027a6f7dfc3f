"""kagglekit.data.dicom and the image cache on DICOMs: robust over every file pydicom ships, exact on files written
here, and honest on a real chest x-ray when one is available."""

from __future__ import annotations

import pickle
import warnings
from pathlib import Path

import numpy as np
import pydicom.data
import pytest
from pydicom import dcmread
from pydicom.dataset import Dataset, FileMetaDataset
from pydicom.encaps import encapsulate
from pydicom.pixels import get_decoder, get_encoder
from pydicom.uid import (
    MPEG2MPML,
    UID,
    DigitalXRayImageStorageForPresentation,
    ExplicitVRLittleEndian,
    JPEG2000Lossless,
    JPEGLSLossless,
    RLELossless,
    generate_uid,
)

from kagglekit.data.cache import CacheSpec, cache_images, load_cached
from kagglekit.data.dicom import decode_dicom, dicom_uid, read_dicom
from kagglekit.data.pixels import mosaic
from kagglekit.errors import DataError, DicomReadError

PYDICOM_DATA = Path(pydicom.data.DATA_ROOT)
REAL_XRAYS = Path(__file__).resolve().parents[1].parent / "shared" / "realdata" / "dicom" / "nih_chest_xray"

# Files that must decode, with the shape read_dicom(frames="first") gives: one per transfer syntax family
# and photometric interpretation the toolkit meets in competitions.
KNOWN_GOOD = {
    "test_files/CT_small.dcm": (128, 128),  # signed 16-bit, RescaleIntercept -1024
    "test_files/MR_small.dcm": (64, 64),
    "test_files/MR_small_RLE.dcm": (64, 64),
    "test_files/MR_small_jpeg_ls_lossless.dcm": (64, 64),
    "test_files/MR_small_jp2klossless.dcm": (64, 64),
    "test_files/JPGExtended.dcm": (1024, 256),  # 12-bit JPEG
    "test_files/image_dfl.dcm": (512, 512),  # deflated
    "test_files/SC_rgb_jpeg_dcmtk.dcm": (100, 100, 3),  # JPEG baseline, YBR_FULL
    "test_files/SC_ybr_full_422_uncompressed.dcm": (100, 100, 3),
    "test_files/examples_jpeg2k.dcm": (480, 640, 3),  # JPEG 2000, YBR_RCT
    "test_files/examples_palette.dcm": (350, 800, 3),  # PALETTE COLOR, 16-bit LUT
    "test_files/examples_ybr_color.dcm": (240, 320, 3),  # 30-frame JPEG, YBR_FULL_422
    "test_files/dicomdirtests/77654033/CR1/6154": (16, 16),  # MONOCHROME1
}
# Files that must give a reason (a substring of it), not an exception.
KNOWN_BROKEN = {
    "test_files/MR_truncated.dcm": "less than expected",
    "test_files/JPEG2000-embedded-sequence-delimiter.dcm": "JPEG 2000 Image Compression: cannot decode",
    "test_files/meta_missing_tsyntax.dcm": "'Bits Allocated'",  # read without its syntax, then lacks an element
    "test_files/rtplan.dcm": "no pixel data (RT Plan Storage)",
    "test_files/README.txt": "no pixel data",
}


@pytest.fixture(scope="module")
def shipped() -> dict[Path, np.ndarray | str]:
    """Every file under pydicom.data, read: an image, or the reason it is not one.

    Globbed rather than `get_testdata_files("**/*")`, which would also try to download the pydicom-data
    repository: ~15 s of timeouts offline, hundreds of MB online. This is the set pydicom itself ships.
    """
    results: dict[Path, np.ndarray | str] = {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # pydicom warns about the deliberately malformed files
        for path in sorted(p for p in PYDICOM_DATA.rglob("*") if p.is_file() and p.suffix not in {".py", ".pyc"}):
            try:
                results[path] = read_dicom(path)
            except DicomReadError as exc:
                results[path] = exc.reason
    return results


def write_dicom(
    path: Path,
    pixels: np.ndarray,
    photometric: str = "MONOCHROME2",
    bits_stored: int = 12,
    slope: float = 1.0,
    intercept: float = 0.0,
    syntax: UID = ExplicitVRLittleEndian,
    **elements: object,
) -> Path:
    """Write a single-frame, unsigned, 16-bit-allocated DX image with exactly the header given."""
    ds = Dataset()
    ds.file_meta = FileMetaDataset()
    ds.file_meta.TransferSyntaxUID = ExplicitVRLittleEndian
    ds.file_meta.MediaStorageSOPClassUID = DigitalXRayImageStorageForPresentation
    ds.file_meta.MediaStorageSOPInstanceUID = ds.SOPInstanceUID = generate_uid()
    ds.SOPClassUID = DigitalXRayImageStorageForPresentation
    ds.Rows, ds.Columns = pixels.shape
    ds.BitsAllocated, ds.BitsStored, ds.HighBit = 16, bits_stored, bits_stored - 1
    ds.PixelRepresentation = 0
    ds.SamplesPerPixel = 1
    ds.PhotometricInterpretation = photometric
    ds.RescaleSlope, ds.RescaleIntercept = slope, intercept
    for keyword, value in elements.items():
        setattr(ds, keyword, value)
    ds.PixelData = pixels.astype("<u2").tobytes()
    if syntax != ExplicitVRLittleEndian:
        ds.compress(syntax)
    ds.save_as(path, enforce_file_format=True)
    return path


def gradient(rows: int = 64, cols: int = 80, top: int = 4095) -> np.ndarray:
    """Row-major ramp 0..top: darkest top-left, brightest bottom-right, every level present when
    rows * cols > top; not square, so a transpose would show."""
    return (np.arange(rows * cols, dtype=np.int64) * top // (rows * cols - 1)).reshape(rows, cols)


def twelve_bit_expected(stored: np.ndarray) -> np.ndarray:
    """The documented mapping for an unsigned 12-bit header: x * 65535 / 4095, rounded."""
    return np.rint(stored * (65535 / 4095)).astype(np.uint16)


def per_level(image: np.ndarray, stored: np.ndarray) -> np.ndarray:
    """The output value for each distinct stored value, in increasing stored order."""
    _, first = np.unique(stored.ravel(), return_index=True)
    return image.ravel()[first].astype(int)


# --- robustness over pydicom's own files ---------------------------------------------------------------


def test_every_shipped_file_gives_an_image_or_a_one_line_reason(shipped):
    assert len(shipped) > 150
    for path, result in shipped.items():
        if isinstance(result, str):
            assert result and "\n" not in result, path
        elif result.dtype == np.uint16:
            assert result.ndim == 2, path
        else:
            assert result.dtype == np.uint8 and result.ndim == 3 and result.shape[2] == 3, path
    assert sum(isinstance(r, np.ndarray) for r in shipped.values()) > 90


@pytest.mark.parametrize(("name", "shape"), KNOWN_GOOD.items())
def test_known_good_shipped_files_decode(shipped, name, shape):
    image = shipped[PYDICOM_DATA / name]
    assert isinstance(image, np.ndarray), image
    assert image.shape == shape
    assert image.dtype == (np.uint8 if len(shape) == 3 else np.uint16)


@pytest.mark.parametrize(("name", "reason"), KNOWN_BROKEN.items())
def test_known_broken_shipped_files_give_a_reason(shipped, name, reason):
    assert reason in shipped[PYDICOM_DATA / name]
    with pytest.raises(DicomReadError, match=Path(name).name):
        read_dicom(PYDICOM_DATA / name)


def test_lossless_syntaxes_decode_identically(shipped):
    reference = shipped[PYDICOM_DATA / "test_files/MR_small.dcm"]
    for name in ("MR_small_RLE.dcm", "MR_small_jpeg_ls_lossless.dcm", "MR_small_jp2klossless.dcm"):
        np.testing.assert_array_equal(shipped[PYDICOM_DATA / "test_files" / name], reference, err_msg=name)


def test_ycbcr_is_converted_to_rgb_exactly_once(shipped):
    rgb = shipped[PYDICOM_DATA / "test_files/SC_rgb_rle.dcm"].astype(int)  # lossless RGB reference
    for name in ("SC_rgb_jpeg_dcmtk.dcm", "SC_ybr_full_422_uncompressed.dcm"):
        converted = shipped[PYDICOM_DATA / "test_files" / name].astype(int)
        assert np.abs(converted - rgb).mean() < 2, name  # a missing or double conversion is off by ~100


def test_shipped_monochrome1_is_inverted(shipped):
    path = PYDICOM_DATA / "test_files/dicomdirtests/77654033/CR1/6154"
    stored = dcmread(path).pixel_array
    image = shipped[path]
    assert image.flat[stored.argmin()] == image.max()
    assert image.flat[stored.argmax()] == image.min()


def test_multi_frame_first_or_all():
    ybr = PYDICOM_DATA / "test_files/examples_ybr_color.dcm"
    everything = read_dicom(ybr, frames="all")
    assert everything.shape == (30, 240, 320, 3)
    np.testing.assert_array_equal(everything[0], read_dicom(ybr))
    assert read_dicom(PYDICOM_DATA / "test_files/rtdose.dcm", frames="all").shape == (15, 10, 10)


GREY = CacheSpec(channels=1)  # what a DICOM competition caches: grey at full depth, full size


def cache_dicoms(paths, folder, spec=GREY):
    return cache_images(paths, folder, spec, kind="dicom", workers=0)


def test_cache_over_shipped_files_reports_images_and_failures(shipped, tmp_path):
    report = cache_images(list(shipped), tmp_path, GREY, kind="dicom", workers=2)
    assert set(report.images) == {p for p, r in shipped.items() if isinstance(r, np.ndarray)}
    assert report.failures == {p: r for p, r in shipped.items() if isinstance(r, str)}
    summary = report.summary()
    # two shipped files are byte-identical and share one entry, so "converted" vs "reused" depends on timing
    assert summary.startswith(f"{len(report.images)} cached (")
    assert summary.splitlines()[0].endswith(f"{len(report.failures)} failed")
    for name in KNOWN_BROKEN:
        assert f"{PYDICOM_DATA / name}: " in summary


# --- correctness on files written here -----------------------------------------------------------------


def test_monochrome2_keeps_12_bits_and_orientation(tmp_path):
    stored = gradient()
    image = read_dicom(write_dicom(tmp_path / "m2.dcm", stored))
    assert image.dtype == np.uint16 and image.shape == (64, 80)
    np.testing.assert_array_equal(image, twelve_bit_expected(stored))
    assert len(np.unique(image)) == 4096
    assert image[0, 0] == 0 and image[-1, -1] == 65535  # top-left dark, bottom-right bright


def test_mapping_is_fixed_by_the_header_not_stretched_per_image(tmp_path):
    stored = 1000 + gradient() // 4  # uses only 1000..2023 of the 12-bit range
    image = read_dicom(write_dicom(tmp_path / "narrow.dcm", stored))
    np.testing.assert_array_equal(image, twelve_bit_expected(stored))
    assert image.min() > 0 and image.max() < 65535


def test_monochrome1_stored_max_is_darkest(tmp_path):
    stored = gradient()
    image = read_dicom(write_dicom(tmp_path / "m1.dcm", stored, photometric="MONOCHROME1"))
    assert image[-1, -1] == 0 and image[0, 0] == 65535
    np.testing.assert_array_equal(image, 65535 - twelve_bit_expected(stored))


@pytest.mark.parametrize(("slope", "intercept", "increasing"), [(0.5, -1024.0, True), (-2.0, 100.0, False)])
def test_rescale_slope_and_intercept(tmp_path, slope, intercept, increasing):
    stored = gradient()
    image = read_dicom(write_dicom(tmp_path / "r.dcm", stored, slope=slope, intercept=intercept))
    steps = np.diff(per_level(image, stored))
    assert (steps > 0).all() if increasing else (steps < 0).all()  # monotonic, every level distinct
    # the mapping is linear and fixed by the header, so a positive slope changes nothing
    expected = twelve_bit_expected(stored if increasing else 4095 - stored)
    np.testing.assert_array_equal(image, expected)


def test_window_is_opt_in_and_spans_uint16(tmp_path):
    stored = gradient()
    path = write_dicom(tmp_path / "w.dcm", stored, intercept=-1000.0, WindowCenter=1048, WindowWidth=1024)
    np.testing.assert_array_equal(read_dicom(path), twelve_bit_expected(stored))  # default: no window
    windowed = read_dicom(path, window=True)
    hu = stored - 1000
    assert (windowed[hu < 1048 - 512] == 0).all() and (windowed[hu > 1048 + 512] == 65535).all()
    inside = (hu > 1048 - 500) & (hu < 1048 + 500)
    steps = np.diff(per_level(windowed[inside], stored[inside]))
    assert (steps > 60).all()  # the 1024-wide window is stretched over 65535: ~64 per stored level


@pytest.mark.parametrize("syntax", [RLELossless, JPEG2000Lossless, JPEGLSLossless], ids=lambda s: s.name)
def test_compressed_file_decodes_like_the_uncompressed_one(tmp_path, syntax):
    encoder = get_encoder(syntax)  # every one is a (dev) dependency: a missing encoder fails, never skips
    assert encoder.is_available, f"no {syntax.name} encoder installed: {'; '.join(encoder.missing_dependencies)}"
    stored = gradient()
    plain = read_dicom(write_dicom(tmp_path / "plain.dcm", stored, photometric="MONOCHROME1"))
    path = write_dicom(tmp_path / "packed.dcm", stored, photometric="MONOCHROME1", syntax=syntax)
    assert dcmread(path).file_meta.TransferSyntaxUID == syntax
    np.testing.assert_array_equal(read_dicom(path), plain)


def test_unsupported_syntax_and_missing_decoder_are_named(tmp_path, monkeypatch):
    ds = dcmread(write_dicom(tmp_path / "mpeg.dcm", gradient()))
    ds.file_meta.TransferSyntaxUID = MPEG2MPML
    ds.PixelData = encapsulate([b"\x00\x00\x01\xb3" * 8])
    ds.save_as(tmp_path / "mpeg.dcm")
    with pytest.raises(DicomReadError, match=r"mpeg\.dcm: MPEG2 Main Profile / Main Level: .*not supported"):
        read_dicom(tmp_path / "mpeg.dcm")

    monkeypatch.setattr(type(get_decoder(JPEG2000Lossless)), "is_available", property(lambda self: False))
    with pytest.raises(DicomReadError, match=r"JPEG 2000 Image Compression \(Lossless Only\): no decoder"):
        read_dicom(PYDICOM_DATA / "test_files/MR_small_jp2klossless.dcm")


def test_dicom_uid_reads_the_header(tmp_path):
    path = write_dicom(tmp_path / "u.dcm", gradient())
    assert dicom_uid(path) == dcmread(path).SOPInstanceUID
    with pytest.raises(DicomReadError, match="no SOPInstanceUID"):
        dicom_uid(PYDICOM_DATA / "test_files/README.txt")


def test_a_file_without_file_meta_is_read_as_implicit_little_endian_and_noted(tmp_path):
    """No preamble, no file meta, no Transfer Syntax UID: what some converters and old archives write."""
    path = write_dicom(tmp_path / "meta.dcm", gradient())
    ds = dcmread(path)
    del ds.file_meta
    ds.preamble = None
    ds.save_as(tmp_path / "bare.dcm", implicit_vr=True, little_endian=True, enforce_file_format=False)
    bare = tmp_path / "bare.dcm"
    assert bare.read_bytes()[128:132] != b"DICM" and not dcmread(bare, force=True).file_meta.get("TransferSyntaxUID")
    decoded = decode_dicom(bare)
    np.testing.assert_array_equal(decoded.image, read_dicom(path))
    assert decoded.note == "no Transfer Syntax UID in the file meta: read as Implicit VR Little Endian"
    report = cache_dicoms([bare, path], tmp_path / "cache")
    assert set(report.images) == {bare, path} and report.notes == {bare: decoded.note}
    assert cache_dicoms([bare], tmp_path / "cache").notes == {bare: decoded.note}  # reused, still noted
    assert report.counts() == {"cached": 2, "reused": 0, "failed": 0, "noted": 1}


def test_a_file_without_file_meta_and_compressed_pixels_says_why(tmp_path):
    path = write_dicom(tmp_path / "rle.dcm", gradient(), syntax=RLELossless)
    ds = dcmread(path)
    del ds.file_meta
    ds.preamble = None
    ds.save_as(tmp_path / "bare.dcm", implicit_vr=False, little_endian=True, enforce_file_format=False)
    with pytest.raises(DicomReadError, match="compressed pixel data, but no Transfer Syntax UID"):
        read_dicom(tmp_path / "bare.dcm")


def test_read_error_is_a_picklable_data_error(tmp_path):
    error = DicomReadError(tmp_path / "x.dcm", "broken")
    assert isinstance(error, DataError)
    assert str(pickle.loads(pickle.dumps(error))) == f"{tmp_path / 'x.dcm'}: broken"


# --- the image cache on DICOMs ---------------------------------------------------------------------------


@pytest.mark.parametrize("bits_stored", [12, 16])
def test_cache_round_trips_uint16_exactly(tmp_path, bits_stored):
    stored = gradient(256, 320, top=2**bits_stored - 1)  # 16 bits: every uint16 value, 0 and 65535 included
    source = write_dicom(tmp_path / "g.dcm", stored, bits_stored=bits_stored)
    report = cache_dicoms([source], tmp_path / "cache", CacheSpec((256, 256), channels=1))  # no need to shrink
    cached = load_cached(report.images[source])
    assert cached.dtype == np.uint16
    np.testing.assert_array_equal(cached, read_dicom(source))


def test_cache_reuses_unchanged_and_reconverts_changed_files(tmp_path):
    source = write_dicom(tmp_path / "s.dcm", gradient())
    first = cache_dicoms([source], tmp_path / "cache")
    entry = first.images[source]
    mtime = entry.stat().st_mtime_ns
    assert not first.reused

    again = cache_dicoms([source], tmp_path / "cache")
    assert again.reused == {source} and again.images[source] == entry
    assert entry.stat().st_mtime_ns == mtime
    assert "0 converted, 1 reused" in again.summary()

    write_dicom(source, gradient()[::-1])  # same name, new content
    changed = cache_dicoms([source], tmp_path / "cache")
    assert not changed.reused and changed.images[source] != entry
    np.testing.assert_array_equal(load_cached(changed.images[source]), read_dicom(source))

    resized = cache_dicoms([source], tmp_path / "cache", CacheSpec((32, 32), channels=1))
    assert not resized.reused and resized.images[source] != changed.images[source]
    assert CacheSpec.of_entry(resized.images[source]) == CacheSpec((32, 32), channels=1)


def test_cache_shrinks_to_cover_the_size_keeping_aspect(tmp_path):
    grey = write_dicom(tmp_path / "g.dcm", gradient(64, 80))
    colour = PYDICOM_DATA / "test_files/examples_rgb_color.dcm"  # 240 x 320
    small_grey = load_cached(cache_dicoms([grey], tmp_path / "cache", CacheSpec((30, 30), 1)).images[grey])
    assert small_grey.shape == (30, 38) and small_grey.dtype == np.uint16  # the shorter side just covers 30
    assert len(np.unique(small_grey)) > 256  # resampled in float, not through 8 bits
    assert small_grey[0, 0] < small_grey[-1, -1]
    small_colour = load_cached(cache_dicoms([colour], tmp_path / "cache", CacheSpec((30, 30), 3)).images[colour])
    assert small_colour.shape == (30, 40, 3) and small_colour.dtype == np.uint8
    as_grey = load_cached(cache_dicoms([colour], tmp_path / "cache", CacheSpec((30, 30), 1)).images[colour])
    assert as_grey.shape == (30, 40) and as_grey.dtype == np.uint16  # colour in a grey competition: its luma
    assert np.abs(as_grey / 257 - small_colour @ [0.299, 0.587, 0.114]).mean() < 0.5  # (Lanczos ringing clips)


def test_cache_tiles_all_frames_into_one_image(tmp_path):
    source = PYDICOM_DATA / "test_files/SC_rgb_rle_2frame.dcm"
    frames = read_dicom(source, frames="all")
    assert frames.shape[0] == 2
    report = cache_dicoms([source], tmp_path, CacheSpec(channels=3, frames="all"))
    tiled = load_cached(report.images[source])
    np.testing.assert_array_equal(tiled, np.concatenate(list(frames), axis=1))  # two frames side by side
    first = load_cached(cache_dicoms([source], tmp_path, CacheSpec(channels=3)).images[source])
    np.testing.assert_array_equal(first, frames[0])


def test_mosaic_is_a_near_square_grid_with_black_cells():
    frames = np.arange(5 * 2 * 3, dtype=np.uint16).reshape(5, 2, 3) + 1
    grid = mosaic(frames)
    assert grid.shape == (2 * 2, 3 * 3)  # 5 frames: 3 columns, 2 rows
    np.testing.assert_array_equal(grid[2:4, 3:6], frames[4])
    assert (grid[2:4, 6:9] == 0).all()


def test_cache_report_names_each_failure(tmp_path):
    good = write_dicom(tmp_path / "good.dcm", gradient())
    bad = PYDICOM_DATA / "test_files/MR_truncated.dcm"
    report = cache_dicoms([good, bad], tmp_path / "cache")
    assert set(report.images) == {good} and good not in report.reused
    assert "less than expected" in report.failures[bad]
    assert f"  {bad}: " in report.summary()


# --- a real chest x-ray --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def real_xray() -> Path:
    found = sorted(REAL_XRAYS.glob("*.dcm")) if REAL_XRAYS.is_dir() else []
    if not found:
        pytest.skip(f"no real chest x-ray DICOM under {REAL_XRAYS}")
    return found[0]


def test_real_chest_xray(real_xray, tmp_path):
    ds = dcmread(real_xray)
    # The assertions below rely on this header; say so rather than pass by accident on another file.
    assert ds.PhotometricInterpretation == "MONOCHROME2" and ds.PixelRepresentation == 0
    assert "RescaleSlope" not in ds and "ModalityLUTSequence" not in ds
    image = read_dicom(real_xray)
    assert image.shape == (ds.Rows, ds.Columns) and image.dtype == np.uint16
    # Full depth kept: every stored level survives, scaled by the constant 65535 / (2**BitsStored - 1).
    # (This NIH file is 8 bits stored, so "more than 256 levels" is impossible for the decoded image.)
    stored = ds.pixel_array
    np.testing.assert_array_equal(image, np.rint(stored * (65535 / (2**ds.BitsStored - 1))).astype(np.uint16))
    assert len(np.unique(image)) == len(np.unique(stored)) > 200
    # PA chest: mediastinum and spine (centre column) brighter than the lung fields at 25% and 75% width.
    width = image.shape[1]

    def band(fraction: float) -> float:
        return float(image[:, int(width * (fraction - 0.05)) : int(width * (fraction + 0.05))].mean())

    assert band(0.5) > band(0.25) and band(0.5) > band(0.75)
    assert dicom_uid(real_xray) == real_xray.stem  # the file is named after its SOPInstanceUID

    report = cache_dicoms([real_xray], tmp_path, CacheSpec((256, 256), channels=1))
    cached = load_cached(report.images[real_xray])
    assert cached.shape == (256, 256) and cached.dtype == np.uint16
    assert len(np.unique(cached)) > 256  # downscaled in float: averaged pixels add levels, none are lost
