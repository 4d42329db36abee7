"""Image bytes built in memory for the reliability tests: valid seeds and hostile inputs (no binary fixtures)."""

from __future__ import annotations

import io
import struct
import zipfile
import zlib

import numpy as np
from PIL import Image

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def pattern(width: int = 64, height: int = 48, seed: int = 0) -> np.ndarray:
    """An HxWx3 uint8 RGB image with structure (gradients + a disc + noise), so encoders do real work."""
    rng = np.random.default_rng(seed)
    yy, xx = np.mgrid[0:height, 0:width]
    image = np.empty((height, width, 3), np.uint8)
    image[..., 0] = (xx * 255 // max(width - 1, 1)).astype(np.uint8)
    image[..., 1] = (yy * 255 // max(height - 1, 1)).astype(np.uint8)
    disc = (xx - width / 2) ** 2 + (yy - height / 2) ** 2 < (min(width, height) / 3) ** 2
    image[..., 2] = np.where(disc, 40, 200).astype(np.uint8)
    return np.clip(image.astype(np.int16) + rng.integers(-8, 9, image.shape), 0, 255).astype(np.uint8)


def pil_bytes(image: Image.Image, fmt: str, **options: object) -> bytes:
    out = io.BytesIO()
    image.save(out, format=fmt, **options)
    return out.getvalue()


def rgb(width: int = 64, height: int = 48, seed: int = 0) -> Image.Image:
    return Image.fromarray(pattern(width, height, seed), "RGB")


def jpeg(width: int = 64, height: int = 48, **options: object) -> bytes:
    return pil_bytes(rgb(width, height), "JPEG", quality=90, **options)


def png(width: int = 64, height: int = 48) -> bytes:
    return pil_bytes(rgb(width, height), "PNG")


def png_chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def png_declaring(width: int, height: int, idat: bytes | None = None) -> bytes:
    """A well-formed PNG (correct CRCs) whose IHDR declares width x height 8-bit RGB.

    The default IDAT is the zlib stream of a few rows of zeros: a few hundred bytes in all, so only the
    header can tell how big the image would be.
    """
    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    if idat is None:
        idat = zlib.compress(b"\x00" * 100_000, 9)
    return PNG_SIGNATURE + png_chunk(b"IHDR", ihdr) + png_chunk(b"IDAT", idat) + png_chunk(b"IEND", b"")


def png_16bit(width: int = 64, height: int = 48) -> bytes:
    """A 16-bit-per-channel RGB PNG (cv2 reduces it to 8 bits)."""
    import cv2

    data = pattern(width, height).astype(np.uint16) * 257
    ok, encoded = cv2.imencode(".png", np.ascontiguousarray(data[..., ::-1]))
    assert ok
    out = encoded.tobytes()
    assert out[24] == 16  # IHDR bit depth
    return out


def png_palette(width: int = 64, height: int = 48) -> bytes:
    out = pil_bytes(rgb(width, height).convert("P", palette=Image.Palette.ADAPTIVE, colors=16), "PNG")
    assert out[25] == 3  # IHDR colour type: indexed
    return out


def jpeg_cmyk(width: int = 64, height: int = 48) -> bytes:
    return pil_bytes(rgb(width, height).convert("CMYK"), "JPEG", quality=90)


def jpeg_progressive(width: int = 64, height: int = 48) -> bytes:
    out = jpeg(width, height, progressive=True)
    assert b"\xff\xc2" in out  # SOF2: progressive DCT
    return out


def gif(width: int = 64, height: int = 48) -> bytes:
    return pil_bytes(rgb(width, height).convert("P"), "GIF")


def zip_archive() -> bytes:
    out = io.BytesIO()
    with zipfile.ZipFile(out, "w", zipfile.ZIP_DEFLATED) as archive:
        archive.writestr("readme.txt", "hello " * 100)
        archive.writestr("payload/evil.sh", "#!/bin/sh\necho pwned\n")
    return out.getvalue()


def jpeg_zip_polyglot() -> bytes:
    """A complete JPEG followed by a ZIP archive (readable as either, like a 'motion photo')."""
    data = jpeg() + zip_archive()
    with zipfile.ZipFile(io.BytesIO(data)) as archive:  # zipfile finds the archive behind the JPEG
        assert "readme.txt" in archive.namelist()
    return data


SVG = (
    b'<?xml version="1.0"?>\n<!DOCTYPE svg [<!ENTITY x SYSTEM "file:///etc/passwd">]>\n'
    b'<svg xmlns="http://www.w3.org/2000/svg" width="64" height="48"><text>&x;</text></svg>\n'
)
HTML = b"<!doctype html><html><body><script>alert(1)</script><img src=x onerror=alert(2)></body></html>\n"


def bmp_declaring(width: int, height: int) -> bytes:
    """A BMP header (BITMAPINFOHEADER) declaring width x height 24-bit, with almost no pixel data."""
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, 0, 2835, 2835, 0, 0)
    pixels = b"\x00" * 64
    header = b"BM" + struct.pack("<IHHI", 14 + len(info) + len(pixels), 0, 0, 14 + len(info))
    return header + info + pixels


def webp_vp8x_declaring(width: int, height: int) -> bytes:
    """A RIFF/WEBP file whose VP8X chunk declares a width x height canvas and holds nothing else."""
    vp8x = b"\x00\x00\x00\x00" + (width - 1).to_bytes(3, "little") + (height - 1).to_bytes(3, "little")
    body = b"WEBP" + b"VP8X" + struct.pack("<I", len(vp8x)) + vp8x
    return b"RIFF" + struct.pack("<I", len(body)) + body


def tiff_declaring(width: int, height: int) -> bytes:
    """A little-endian TIFF with one IFD declaring width x height 8-bit grey and a 16-byte strip."""
    entries = [
        (256, 4, 1, width),  # ImageWidth, LONG
        (257, 4, 1, height),  # ImageLength
        (258, 3, 1, 8),  # BitsPerSample
        (259, 3, 1, 1),  # Compression: none
        (262, 3, 1, 1),  # Photometric: min-is-black
        (273, 4, 1, 0),  # StripOffsets: patched below
        (277, 3, 1, 1),  # SamplesPerPixel
        (278, 4, 1, height),  # RowsPerStrip
        (279, 4, 1, 16),  # StripByteCounts
    ]
    ifd_offset = 8
    strip_offset = ifd_offset + 2 + 12 * len(entries) + 4
    ifd = struct.pack("<H", len(entries))
    for tag, kind, count, value in entries:
        value = strip_offset if tag == 273 else value
        packed = struct.pack("<HI", value, 0)[:4] if kind == 3 else struct.pack("<I", value)
        ifd += struct.pack("<HHI", tag, kind, count) + packed
    ifd += struct.pack("<I", 0)
    return b"II*\x00" + struct.pack("<I", ifd_offset) + ifd + b"\x00" * 16


def seeds() -> dict[str, bytes]:
    """Small valid images of every allowed format (and variants), the starting points for fuzzing."""
    base = rgb(32, 24)
    return {
        "rgb.jpg": pil_bytes(base, "JPEG", quality=80),
        "progressive.jpg": pil_bytes(base, "JPEG", quality=80, progressive=True),
        "cmyk.jpg": pil_bytes(base.convert("CMYK"), "JPEG"),
        "grey.jpg": pil_bytes(base.convert("L"), "JPEG"),
        "rgb.png": pil_bytes(base, "PNG"),
        "rgba.png": pil_bytes(base.convert("RGBA"), "PNG"),
        "palette.png": pil_bytes(base.convert("P"), "PNG"),
        "rgb16.png": png_16bit(32, 24),
        "rgb.bmp": pil_bytes(base, "BMP"),
        "palette.bmp": pil_bytes(base.convert("P"), "BMP"),
        "rgb.tif": pil_bytes(base, "TIFF"),
        "lzw.tif": pil_bytes(base, "TIFF", compression="tiff_lzw"),
        "lossy.webp": pil_bytes(base, "WEBP", quality=70),
        "lossless.webp": pil_bytes(base, "WEBP", lossless=True),
    }


def jpeg_with_broken_exif() -> bytes:
    """A JPEG whose EXIF (APP1) directory points a tag's data far past its end, with orientation 6."""
    ifd = struct.pack("<H", 2)
    ifd += struct.pack("<HHII", 0x010F, 2, 200, 5000)  # Make: 200 ASCII bytes at offset 5000 (beyond the data)
    ifd += struct.pack("<HHIHH", 0x0112, 3, 1, 6, 0)  # Orientation: 6
    tiff = b"II*\x00" + struct.pack("<I", 8) + ifd + struct.pack("<I", 0)
    app1 = b"Exif\x00\x00" + tiff
    data = jpeg()
    return data[:2] + b"\xff\xe1" + struct.pack(">H", len(app1) + 2) + app1 + data[2:]
