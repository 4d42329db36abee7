"""Tests for runtime/decode.py: every input is generated here, none is committed."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib
from collections.abc import Callable
from pathlib import Path

import cv2
import numpy as np
import pytest
from PIL import Image, ImageOps

from vreyesam.runtime.media import decode
from vreyesam.runtime.media.decode import (
    DecodeLimits,
    ImageInputError,
    ImageTooLarge,
    UndecodableImage,
    UnsupportedFormat,
    decode_image,
    read_header_size,
    read_image_file,
    sniff_format,
)

H, W = 24, 40  # not square, so that a rotation shows in the shape


def _rgb() -> np.ndarray:
    """HxWx3 uint8 RGB with structure in both axes (gradients plus a bright corner)."""
    y, x = np.mgrid[0:H, 0:W]
    img = np.stack([x * 6, y * 10, (x + y) * 3], axis=-1).astype(np.uint8)
    img[:4, :6] = (255, 255, 255)
    return img


def _cv2(ext: str, array: np.ndarray, params: tuple[int, ...] = ()) -> bytes:
    ok, buf = cv2.imencode(ext, array, list(params))
    assert ok
    return buf.tobytes()


def _pil(image: Image.Image, fmt: str, **kwargs: object) -> bytes:
    out = io.BytesIO()
    image.save(out, fmt, **kwargs)
    return out.getvalue()


def _exif(orientation: int) -> Image.Exif:
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def _png_chunk(kind: bytes, payload: bytes) -> bytes:
    return struct.pack(">I", len(payload)) + kind + payload + struct.pack(">I", zlib.crc32(kind + payload))


def _png_by_hand(width: int, height: int) -> bytes:
    """A few dozen bytes of PNG that declare width x height RGB (the IDAT holds one row only)."""
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    idat = zlib.compress(b"\x00" + b"\x00" * 3 * min(width, 16))
    return b"\x89PNG\r\n\x1a\n" + _png_chunk(b"IHDR", ihdr) + _png_chunk(b"IDAT", idat) + _png_chunk(b"IEND", b"")


# name -> bytes of an image that must decode exactly as cv2.imread decodes the same file.
ACCEPTED: dict[str, Callable[[], bytes]] = {
    "jpeg": lambda: _cv2(".jpg", _rgb()[..., ::-1]),
    "jpeg_progressive": lambda: _pil(Image.fromarray(_rgb()), "JPEG", progressive=True),
    "jpeg_cmyk": lambda: _pil(Image.fromarray(_rgb()).convert("CMYK"), "JPEG"),
    "jpeg_gray": lambda: _cv2(".jpg", _rgb()[..., 0]),
    "png": lambda: _cv2(".png", _rgb()[..., ::-1]),
    "png_gray": lambda: _cv2(".png", _rgb()[..., 1]),
    "png_16bit": lambda: _cv2(".png", _rgb().astype(np.uint16) * 257 + 3),
    "png_16bit_gray": lambda: _cv2(".png", _rgb()[..., 0].astype(np.uint16) * 250),
    "png_palette": lambda: _pil(Image.fromarray(_rgb()).quantize(16), "PNG"),
    "png_rgba": lambda: _cv2(".png", np.dstack([_rgb(), np.arange(W, dtype=np.uint8)[None].repeat(H, 0)])),
    "bmp": lambda: _cv2(".bmp", _rgb()[..., ::-1]),
    "bmp_gray": lambda: _cv2(".bmp", _rgb()[..., 2]),
    "tiff_le": lambda: _cv2(".tiff", _rgb()[..., ::-1]),
    "tiff_be_16bit": lambda: _pil(Image.fromarray((_rgb()[..., 0] * np.uint16(200)).astype(">u2")), "TIFF"),
    "webp_lossy": lambda: _cv2(".webp", _rgb()[..., ::-1], (cv2.IMWRITE_WEBP_QUALITY, 80)),
    "webp_lossless": lambda: _pil(Image.fromarray(_rgb()), "WEBP", lossless=True),
    "webp_rgba": lambda: _pil(Image.fromarray(_rgb()).convert("RGBA"), "WEBP"),
    "one_pixel": lambda: _cv2(".png", np.full((1, 1, 3), 7, np.uint8)),
    **{
        f"jpeg_exif_orientation_{o}": (lambda o=o: _pil(Image.fromarray(_rgb()), "JPEG", exif=_exif(o)))
        for o in range(1, 9)
    },
    "png_exif_orientation_6": lambda: _pil(Image.fromarray(_rgb()), "PNG", exif=_exif(6)),
    "webp_exif_orientation_6": lambda: _pil(Image.fromarray(_rgb()), "WEBP", exif=_exif(6)),
}


@pytest.mark.parametrize("name", sorted(ACCEPTED))
def test_decode_equals_cv2_imread(name: str, tmp_path: Path) -> None:
    data = ACCEPTED[name]()
    path = tmp_path / "upload.bin"  # no telling extension: cv2.imread sniffs content too
    path.write_bytes(data)
    expected = cv2.imread(str(path))[..., ::-1]

    got = decode_image(data)

    assert got.dtype == np.uint8
    assert got.ndim == 3
    assert got.shape[2] == 3
    assert got.flags.c_contiguous
    np.testing.assert_array_equal(got, expected)
    np.testing.assert_array_equal(read_image_file(path), expected)
    assert read_header_size(data) == (got.shape[1], got.shape[0])


@pytest.mark.parametrize("orientation", [5, 6, 7, 8])
def test_exif_transposing_orientations_swap_the_size(orientation: int) -> None:
    data = ACCEPTED[f"jpeg_exif_orientation_{orientation}"]()
    assert read_header_size(data) == (H, W)
    assert decode_image(data).shape == (W, H, 3)


def test_exif_orientation_6_rotates_clockwise() -> None:
    plain = decode_image(ACCEPTED["png"]())
    rotated = decode_image(ACCEPTED["png_exif_orientation_6"]())
    np.testing.assert_array_equal(rotated, np.rot90(plain, k=-1))


@pytest.mark.parametrize("orientation", range(1, 9))
def test_tiff_orientation(orientation: int, tmp_path: Path) -> None:
    # OpenCV 4.14's cv2.imread fails on TIFF orientations 5-8 ("original_ptr == real_mat.data") while
    # cv2.imdecode rotates them like every other format; we accept them, oriented as Pillow does.
    data = _pil(Image.fromarray(_rgb()), "TIFF", exif=_exif(orientation))
    path = tmp_path / "upload.tiff"
    path.write_bytes(data)
    got = decode_image(data)

    with Image.open(path) as pil:
        np.testing.assert_array_equal(got, np.asarray(ImageOps.exif_transpose(pil).convert("RGB")))
    imread = cv2.imread(str(path))
    if imread is not None:
        np.testing.assert_array_equal(got, imread[..., ::-1])
    assert read_header_size(data) == (got.shape[1], got.shape[0])


def test_decoded_colours_are_rgb() -> None:
    red = np.zeros((4, 4, 3), np.uint8)
    red[..., 0] = 255
    np.testing.assert_array_equal(decode_image(_pil(Image.fromarray(red), "PNG")), red)


@pytest.mark.parametrize(
    ("name", "fmt"),
    [
        ("jpeg", "jpeg"),
        ("png", "png"),
        ("bmp", "bmp"),
        ("tiff_le", "tiff"),
        ("tiff_be_16bit", "tiff"),
        ("webp_lossy", "webp"),
        ("webp_lossless", "webp"),
    ],
)
def test_sniff_format(name: str, fmt: str) -> None:
    data = ACCEPTED[name]()
    assert sniff_format(data) == fmt
    if name == "tiff_be_16bit":
        assert data[:4] == b"MM\x00*"  # both TIFF byte orders are covered


def _zip() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w") as archive:
        archive.writestr("payload.txt", "not an image")
    return out.getvalue()


REJECTED_FORMATS: dict[str, Callable[[], bytes]] = {
    "empty": lambda: b"",
    "gif": lambda: _pil(Image.fromarray(_rgb()), "GIF"),
    "svg": lambda: b'<?xml version="1.0"?><svg xmlns="http://www.w3.org/2000/svg" width="10" height="10"/>',
    "html": lambda: b"<!DOCTYPE html><html><body><img src=x onerror=alert(1)></body></html>",
    "pdf": lambda: b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<<>>\nendobj\n",
    "zip": _zip,
    "random": lambda: np.random.default_rng(1).integers(0, 256, 4096, dtype=np.uint8).tobytes(),
    "text_starting_bm": lambda: b"BMW is a car maker, not a bitmap",
    "bigtiff": lambda: b"II+\x00\x08\x00\x00\x00" + b"\x00" * 64,
    "riff_not_webp": lambda: b"RIFF\x24\x00\x00\x00WAVEfmt " + b"\x00" * 32,
    "jpeg_magic_too_short": lambda: b"\xff\xd8",
}


@pytest.mark.parametrize("name", sorted(REJECTED_FORMATS))
def test_unsupported_formats(name: str) -> None:
    data = REJECTED_FORMATS[name]()
    assert sniff_format(data) is None
    with pytest.raises(UnsupportedFormat) as info:
        decode_image(data)
    assert info.value.code == "unsupported_format"
    with pytest.raises(UnsupportedFormat):
        read_header_size(data)


def _truncated(name: str, keep: float) -> bytes:
    data = ACCEPTED[name]()
    return data[: int(len(data) * keep)]


TRUNCATED: dict[str, Callable[[], bytes]] = {
    "jpeg_half": lambda: _truncated("jpeg", 0.5),
    "jpeg_without_eoi": lambda: ACCEPTED["jpeg"]()[:-2],
    "jpeg_progressive_half": lambda: _truncated("jpeg_progressive", 0.6),
    "jpeg_header_only": lambda: _truncated("jpeg", 0.1),
    "png_half": lambda: _truncated("png", 0.5),
    "png_without_iend": lambda: ACCEPTED["png"]()[:-12],
    "png_iend_cut": lambda: ACCEPTED["png"]()[:-1],
    "bmp_half": lambda: _truncated("bmp", 0.5),
    "bmp_last_byte": lambda: ACCEPTED["bmp"]()[:-1],
    "tiff_half": lambda: _truncated("tiff_le", 0.5),
    "webp_lossy_half": lambda: _truncated("webp_lossy", 0.5),
    "webp_lossless_half": lambda: _truncated("webp_lossless", 0.5),
    "webp_header_only": lambda: ACCEPTED["webp_lossy"]()[:16],
}


@pytest.mark.parametrize("name", sorted(TRUNCATED))
def test_truncated_images_are_undecodable(name: str) -> None:
    with pytest.raises(UndecodableImage) as info:
        decode_image(TRUNCATED[name]())
    assert info.value.code == "undecodable_image"


def test_truncated_jpeg_is_caught_before_cv2(monkeypatch: pytest.MonkeyPatch) -> None:
    # Older libjpeg builds decode a truncated JPEG with a grey bottom: the EOI check must not rely on cv2.
    monkeypatch.setattr(decode, "_cv2_decode", _must_not_decode)
    jpeg = ACCEPTED["jpeg"]()
    for data in (jpeg[:-2], jpeg[:-100], ACCEPTED["jpeg_progressive"]()[:-100], ACCEPTED["png"]()[:-12]):
        with pytest.raises(UndecodableImage, match="truncated"):
            decode_image(data)


def test_eoi_inside_a_header_segment_does_not_count() -> None:
    # An APP15 segment holding FFD9 before the scan (like an EXIF thumbnail's EOI), then a cut scan.
    jpeg = ACCEPTED["jpeg"]()
    segment = b"\xff\xef" + struct.pack(">H", 2 + 6) + b"\xff\xd9\xff\xd9\x00\x00"
    with_segment = jpeg[:2] + segment + jpeg[2:]
    np.testing.assert_array_equal(decode_image(with_segment), decode_image(jpeg))
    with pytest.raises(UndecodableImage):
        decode_image(with_segment[:-2])


def test_jpeg_with_zero_padding_is_accepted() -> None:
    jpeg = ACCEPTED["jpeg"]()
    np.testing.assert_array_equal(decode_image(jpeg + b"\x00" * 100), decode_image(jpeg))


def test_jpeg_zip_polyglot_is_accepted_as_the_jpeg() -> None:
    # Decision: bytes after the JPEG's EOI are ignored; only decoded pixels leave decode_image, the
    # upload itself is never stored or served, so the ZIP half is inert.
    jpeg = ACCEPTED["jpeg"]()
    polyglot = jpeg + _zip()
    assert zipfile.is_zipfile(io.BytesIO(polyglot))  # really both
    assert sniff_format(polyglot) == "jpeg"
    np.testing.assert_array_equal(decode_image(polyglot), decode_image(jpeg))


def test_png_with_trailing_data_is_accepted() -> None:
    png = ACCEPTED["png"]()
    np.testing.assert_array_equal(decode_image(png + b"trailing"), decode_image(png))


def _must_not_decode(data: bytes) -> np.ndarray:
    raise AssertionError("a full decode was attempted")


def test_declared_50000x50000_png_is_rejected_from_its_header(monkeypatch: pytest.MonkeyPatch) -> None:
    data = _png_by_hand(50_000, 50_000)
    assert len(data) < 300
    monkeypatch.setattr(decode, "_cv2_decode", _must_not_decode)
    assert read_header_size(data) == (50_000, 50_000)
    with pytest.raises(ImageTooLarge) as info:
        decode_image(data, DecodeLimits(max_width=100_000, max_height=100_000))
    assert info.value.message == "image is 50000x50000 pixels; the limit is 40000000 pixels"
    assert info.value.code == "image_too_large"
    with pytest.raises(ImageTooLarge, match="50000 pixels wide"):
        decode_image(data)


def test_pillow_bomb_check_is_not_involved() -> None:
    # 100M pixels is past Pillow's MAX_IMAGE_PIXELS (Image.open would warn, an error under -W error)
    # but within these limits: the header is read all the same, and only our limits decide.
    data = _png_by_hand(10_000, 10_000)
    assert read_header_size(data) == (10_000, 10_000)
    with pytest.raises(ImageTooLarge, match="10000x10000 pixels; the limit is 40000000"):
        decode_image(data, DecodeLimits(max_width=10_000, max_height=10_000))


def test_too_wide_and_too_high() -> None:
    with pytest.raises(ImageTooLarge, match="20000 pixels wide; the limit is 8192"):
        decode_image(_cv2(".png", np.zeros((1, 20_000), np.uint8)))
    with pytest.raises(ImageTooLarge, match="9000 pixels high; the limit is 8192"):
        decode_image(_cv2(".png", np.zeros((9_000, 1), np.uint8)))


def test_limits_apply_to_the_displayed_size() -> None:
    data = ACCEPTED["jpeg_exif_orientation_6"]()  # stored W x H, displayed H x W
    decode_image(data, DecodeLimits(max_width=H, max_height=W, max_pixels=H * W))
    with pytest.raises(ImageTooLarge, match=f"{W} pixels high; the limit is {H}"):
        decode_image(data, DecodeLimits(max_width=W, max_height=H, max_pixels=H * W))
    with pytest.raises(ImageTooLarge, match="pixels; the limit is"):
        decode_image(data, DecodeLimits(max_pixels=H * W - 1))


def test_huge_webp_canvas_is_rejected_before_pillow_opens_it(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pillow's WebP reader allocates the canvas on open: the declared size is checked before.
    vp8x = b"VP8X" + struct.pack("<I", 10) + b"\x00\x00\x00\x00" + (16383).to_bytes(3, "little") * 2
    data = b"RIFF" + struct.pack("<I", 4 + len(vp8x)) + b"WEBP" + vp8x
    monkeypatch.setattr(decode, "_PILLOW_CLASSES", {})  # any Pillow use would now raise KeyError
    with pytest.raises(ImageTooLarge, match="16384 pixels wide"):
        decode_image(data)


def test_zero_size_image_is_undecodable() -> None:
    with pytest.raises(UndecodableImage):
        decode_image(_png_by_hand(0, 10))
    with pytest.raises(UndecodableImage):
        read_header_size(_png_by_hand(10, 0))


@pytest.mark.parametrize(
    "data",
    [
        b"\xff\xd8\xff\xe0" + b"garbage" * 10,
        b"\x89PNG\r\n\x1a\n" + b"\x00" * 40,
        b"II*\x00" + b"\xff" * 40,
        b"BM" + b"\x00" * 12 + struct.pack("<I", 40) + b"\x00" * 8,
        b"RIFF\x10\x00\x00\x00WEBPVP8 " + b"\x00" * 12,
    ],
    ids=["jpeg", "png", "tiff", "bmp", "webp"],
)
def test_unparseable_headers_are_undecodable(data: bytes) -> None:
    with pytest.raises(UndecodableImage) as info:
        decode_image(data)
    assert info.value.message.startswith("cannot read the")


def test_size_mismatch_between_header_and_decode(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(decode, "_cv2_decode", lambda data: np.zeros((H + 1, W, 3), np.uint8))
    with pytest.raises(UndecodableImage, match="does not match its header"):
        decode_image(ACCEPTED["png"]())


def test_transposed_decode_is_tolerated_and_rechecked(monkeypatch: pytest.MonkeyPatch) -> None:
    # Pillow and cv2 could disagree on EXIF orientation; the same dimensions swapped are accepted,
    # and then held against the limits as decoded.
    monkeypatch.setattr(decode, "_cv2_decode", lambda data: np.zeros((W, H, 3), np.uint8))
    assert decode_image(ACCEPTED["png"]()).shape == (W, H, 3)
    with pytest.raises(ImageTooLarge, match=f"{W} pixels high"):
        decode_image(ACCEPTED["png"](), DecodeLimits(max_width=W, max_height=H))


def test_errors_are_value_errors_with_safe_messages(tmp_path: Path) -> None:
    path = tmp_path / "secret-name.png"
    path.write_bytes(ACCEPTED["png"]()[:-12])
    with pytest.raises(ImageInputError) as info:
        read_image_file(path)
    assert isinstance(info.value, ValueError)
    assert str(info.value) == info.value.message
    assert "secret" not in info.value.message
    assert str(tmp_path) not in info.value.message
