"""Untrusted image bytes -> RGB array, with the semantics of the reference's `cv2.imread(path)[..., ::-1]`.

The pipeline, each step cheap before the next expensive one:

1. `sniff_format`: magic bytes only (never a file name or a Content-Type) against an allow-list of
   JPEG, PNG, BMP, TIFF and WebP -> otherwise `UnsupportedFormat`.
2. `read_header_size`: Pillow parses the header only (no pixel data) and gives the displayed size,
   i.e. after EXIF orientation, as cv2 applies it. The size is checked against `DecodeLimits`
   -> `ImageTooLarge`, before any full decode can allocate memory.
3. A completeness check for the formats whose decoders have been known to accept a truncated file
   (see `_is_truncated`) -> `UndecodableImage`.
4. `cv2.imdecode(..., cv2.IMREAD_COLOR)`: the very decoder `cv2.imread` uses, so the pixels are equal
   bit for bit (grayscale, 16-bit, palette and RGBA all become 8-bit BGR, EXIF orientation applied),
   then BGR -> RGB. A decoded size that differs from the header size -> `UndecodableImage`.

OpenCV also has its own limits, a second line of defence only (the header check is the primary one):
`opencv` sets them before OpenCV is loaded.

Trailing data after a complete image (a JPEG/ZIP polyglot, a phone's motion-photo trailer) is accepted
and ignored: only the decoded pixels ever leave this module, the uploaded bytes are never stored nor
echoed, so what else the bytes could be parsed as does not matter here.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from PIL import BmpImagePlugin, Image, JpegImagePlugin, PngImagePlugin, TiffImagePlugin, WebPImagePlugin

from vreyesam.runtime.media.opencv import cv2
from vreyesam.runtime.settings import DecodeLimits

if TYPE_CHECKING:
    from PIL import ImageFile

# Orientation values 5..8 are the transposed ones: the displayed image has width and height swapped.
_EXIF_ORIENTATION = 0x0112
_TRANSPOSING_ORIENTATIONS = frozenset({5, 6, 7, 8})
_TIFF_WIDTH, _TIFF_HEIGHT = 256, 257

# The PNG IEND chunk has no data, so it is always these 12 bytes (length 0, type, fixed CRC).
_PNG_IEND = b"\x00\x00\x00\x00IEND\xae\x42\x60\x82"
_JPEG_EOI = b"\xff\xd9"
_JPEG_SOS, _JPEG_EOI_MARKER = 0xDA, 0xD9
# JPEG markers that stand alone, without a length field: TEM and RST0..RST7.
_JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD8)})
# Sizes of the BMP DIB headers in use (CORE, INFO, V2, V3, OS/2 2.x, V4, V5): "BM" alone is too weak.
_BMP_DIB_SIZES = frozenset({12, 40, 52, 56, 64, 108, 124})

# Constructing a plugin class parses the header only; unlike Image.open it runs no decompression-bomb
# check (whose warning becomes an error under `-W error`): our own limits replace it.
_PILLOW_CLASSES: dict[str, type[ImageFile.ImageFile]] = {
    "jpeg": JpegImagePlugin.JpegImageFile,
    "png": PngImagePlugin.PngImageFile,
    "bmp": BmpImagePlugin.BmpImageFile,
    "tiff": TiffImagePlugin.TiffImageFile,
    "webp": WebPImagePlugin.WebPImageFile,
}


class ImageInputError(ValueError):
    """The uploaded bytes are not an acceptable image; `message` is safe to show to a client."""

    code: ClassVar[str] = "invalid_image"

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class UnsupportedFormat(ImageInputError):
    """The magic bytes match none of the allowed formats (HTTP 415)."""

    code: ClassVar[str] = "unsupported_format"


class UndecodableImage(ImageInputError):
    """An allowed format, but the header or the data is corrupt, truncated or empty (HTTP 422)."""

    code: ClassVar[str] = "undecodable_image"


class ImageTooLarge(ImageInputError):
    """The header declares dimensions beyond `DecodeLimits` (HTTP 413)."""

    code: ClassVar[str] = "image_too_large"


DEFAULT_LIMITS = DecodeLimits()


def sniff_format(data: bytes) -> str | None:
    """Name of the allowed format whose magic bytes start `data` ("jpeg", "png", ...), else None."""
    head = bytes(data[:32])
    if head.startswith(b"\xff\xd8\xff"):
        return "jpeg"
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        return "png"
    if head.startswith((b"II*\x00", b"MM\x00*")):
        return "tiff"
    if head[:4] == b"RIFF" and head[8:12] == b"WEBP":
        return "webp"
    if head[:2] == b"BM" and len(head) >= 18 and int.from_bytes(head[14:18], "little") in _BMP_DIB_SIZES:
        return "bmp"
    return None


def read_header_size(data: bytes) -> tuple[int, int]:
    """(width, height) as displayed after EXIF orientation, from the header alone.

    Raises UnsupportedFormat, or UndecodableImage when the header cannot be parsed (ImageTooLarge only
    for a WebP canvas beyond twice Pillow's MAX_IMAGE_PIXELS, which its reader refuses to open).
    """
    return _header_size(data, _require_format(data))


def decode_image(data: bytes, limits: DecodeLimits = DEFAULT_LIMITS) -> np.ndarray:
    """Decode untrusted bytes to an HxWx3 uint8 RGB, C-contiguous array (equal to cv2.imread's pixels).

    Raises UnsupportedFormat, ImageTooLarge or UndecodableImage (all ImageInputError).
    """
    fmt = _require_format(data)
    if fmt == "webp":
        # Pillow's WebP reader allocates the whole canvas when it opens the file: check the size first.
        _check_webp_canvas(data, limits)
    width, height = _header_size(data, fmt)
    check_limits(width, height, limits)
    if _is_truncated(data, fmt):
        raise UndecodableImage(f"the {fmt} data is truncated")
    bgr = _cv2_decode(data)
    if bgr.shape[:2] != (height, width):
        # Pillow and cv2 read EXIF orientation separately and could disagree (no case is known with the
        # pinned versions): the same dimensions swapped is that, and harmless; anything else is not.
        if bgr.shape[:2] != (width, height):
            raise UndecodableImage("the decoded image does not match its header")
        check_limits(width=height, height=width, limits=limits)
    return cv2.cvtColor(bgr, cv2.COLOR_BGR2RGB)


def read_image_file(path: Path, limits: DecodeLimits = DEFAULT_LIMITS) -> np.ndarray:
    """`decode_image` of a file's bytes: HxWx3 uint8 RGB."""
    return decode_image(Path(path).read_bytes(), limits)


def check_limits(width: int, height: int, limits: DecodeLimits) -> None:
    """Raise ImageTooLarge (with the offending dimension) unless width x height is within `limits`."""
    if width > limits.max_width:
        raise ImageTooLarge(f"image is {width} pixels wide; the limit is {limits.max_width}")
    if height > limits.max_height:
        raise ImageTooLarge(f"image is {height} pixels high; the limit is {limits.max_height}")
    if width * height > limits.max_pixels:
        raise ImageTooLarge(f"image is {width}x{height} pixels; the limit is {limits.max_pixels} pixels")


def _require_format(data: bytes) -> str:
    fmt = sniff_format(data)
    if fmt is None:
        raise UnsupportedFormat("unsupported image format; send JPEG, PNG, BMP, TIFF or WebP")
    return fmt


def _header_size(data: bytes, fmt: str) -> tuple[int, int]:
    """Displayed (width, height) from the header of an allowed format."""
    try:
        with _PILLOW_CLASSES[fmt](io.BytesIO(data)) as im:
            width, height = _stored_size(im, fmt)
            orientation = _orientation(im, fmt)
    except Image.DecompressionBombError as e:  # WebP beyond twice Pillow's MAX_IMAGE_PIXELS
        raise ImageTooLarge("image dimensions exceed the decoder's limit") from e
    except Exception as e:  # any parser failure on untrusted bytes is the client's problem
        raise UndecodableImage(f"cannot read the {fmt} header") from e
    if width <= 0 or height <= 0:
        raise UndecodableImage("the image is empty (zero width or height)")
    if orientation in _TRANSPOSING_ORIENTATIONS:
        return height, width
    return width, height


def _stored_size(im: ImageFile.ImageFile, fmt: str) -> tuple[int, int]:
    """(width, height) as stored, before orientation (Pillow's TIFF `size` is already oriented)."""
    if fmt == "tiff":
        return int(im.tag_v2[_TIFF_WIDTH]), int(im.tag_v2[_TIFF_HEIGHT])
    return im.size


def _orientation(im: ImageFile.ImageFile, fmt: str) -> int:
    """EXIF orientation (1..8) found in the header, 1 when absent or unreadable (cv2 ignores it too)."""
    if fmt == "tiff":
        value = im.tag_v2.get(_EXIF_ORIENTATION, 1)
    else:
        # Not im.getexif(): for PNG without an early eXIf chunk it would decode the whole image.
        raw = im.info.get("exif")
        if not raw:
            return 1
        try:
            exif = Image.Exif()
            exif.load(raw)
            value = exif.get(_EXIF_ORIENTATION, 1)
        except Exception:
            return 1
    return value if isinstance(value, int) else 1


def _check_webp_canvas(data: bytes, limits: DecodeLimits) -> None:
    """Check the WebP canvas size (before orientation, so against the larger side limit)."""
    width, height = _webp_canvas_size(data)
    side = max(limits.max_width, limits.max_height)
    check_limits(width, height, DecodeLimits(side, side, limits.max_pixels))


def _webp_canvas_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the first chunk: VP8X canvas, lossless VP8L or lossy VP8 frame header."""
    chunk, payload = bytes(data[12:16]), bytes(data[20:30])
    if chunk == b"VP8X" and len(payload) >= 10:
        return 1 + int.from_bytes(payload[4:7], "little"), 1 + int.from_bytes(payload[7:10], "little")
    if chunk == b"VP8L" and len(payload) >= 5 and payload[0] == 0x2F:
        bits = int.from_bytes(payload[1:5], "little")
        return 1 + (bits & 0x3FFF), 1 + ((bits >> 14) & 0x3FFF)
    if chunk == b"VP8 " and len(payload) >= 10 and payload[3:6] == b"\x9d\x01\x2a":
        # 14 bits of size, 2 bits of upscaling hint (which decoders ignore)
        width, height = int.from_bytes(payload[6:8], "little"), int.from_bytes(payload[8:10], "little")
        return width & 0x3FFF, height & 0x3FFF
    raise UndecodableImage("cannot read the webp header")


def _is_truncated(data: bytes, fmt: str) -> bool:
    """True when a JPEG or PNG visibly lacks its end.

    Some libjpeg/libpng builds decode a truncated file with only a warning on stderr (a JPEG gets a
    grey bottom), so we do not leave this to cv2. JPEG: an EOI marker must follow the first scan
    (entropy-coded data escapes 0xFF, so FFD9 there is a real marker; an EXIF thumbnail's EOI comes
    before the scan and does not count). PNG: the IEND chunk must be present. Bytes after the end are
    allowed (see the module docstring). BMP, TIFF and WebP truncation is left to the decoder, which
    fails on it (tested).
    """
    if fmt == "jpeg":
        scan = _jpeg_scan_data_start(data)
        return scan is None or data.find(_JPEG_EOI, scan) < 0
    if fmt == "png":
        return data.find(_PNG_IEND, 8) < 0
    return False


def _jpeg_scan_data_start(data: bytes) -> int | None:
    """Offset of the entropy-coded data after the first SOS segment, None if the markers are broken."""
    pos, end = 2, len(data)
    while pos + 4 <= end:
        if data[pos] != 0xFF:
            return None
        marker = data[pos + 1]
        if marker == 0xFF:  # fill byte before a marker
            pos += 1
            continue
        if marker in _JPEG_STANDALONE:
            pos += 2
            continue
        if marker == _JPEG_EOI_MARKER:  # the image ends before any scan
            return None
        length = int.from_bytes(data[pos + 2 : pos + 4], "big")
        if length < 2:
            return None
        if marker == _JPEG_SOS:
            return pos + 2 + length
        pos += 2 + length
    return None


def _cv2_decode(data: bytes) -> np.ndarray:
    """cv2.imdecode with IMREAD_COLOR (as cv2.imread): HxWx3 uint8 BGR, or UndecodableImage."""
    try:
        bgr = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR)
    except cv2.error as e:  # e.g. OpenCV's own size limits
        raise UndecodableImage("the image data cannot be decoded") from e
    if bgr is None or bgr.ndim != 3 or bgr.shape[2] != 3 or bgr.dtype != np.uint8:
        raise UndecodableImage("the image data cannot be decoded")
    return bgr
