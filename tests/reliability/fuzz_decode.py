"""Fuzz `vreyesam.runtime.media.decode.decode_image`: untrusted bytes -> an RGB array or ImageInputError, nothing else.

The property, for any input: `decode_image(data, limits)` either returns a C-contiguous HxWx3 uint8 array
within those (small) limits, or raises `ImageInputError` (unsupported format, too large, undecodable).
Any other exception, a crash, a hang or a memory blow-up is a finding.

With atheris (coverage-guided, libFuzzer), from the repository root:

    python tests/reliability/fuzz_decode.py -max_total_time=600                  # ten minutes
    python tests/reliability/fuzz_decode.py CORPUS_DIR -max_total_time=3600      # keep what it finds
    python tests/reliability/fuzz_decode.py -runs=100000 -seed=1                 # a fixed number of inputs

libFuzzer flags go through unchanged (-max_len, -timeout, -rss_limit_mb, -jobs ...). Seed images of every
allowed format are built in memory (tests/reliability/corpus.py) and written into the first corpus
directory given, or into a new temporary one (its path is printed). A finding is written as crash-<sha1>
in the working directory; replay it with `python tests/reliability/fuzz_decode.py crash-<sha1>`.

Without atheris, `mutation_fuzz` runs the same property over seeded random mutations of the seed images
(tests/reliability/test_fuzz_decode.py uses it); `python tests/reliability/fuzz_decode.py --mutations N`
runs it from the command line.
"""

from __future__ import annotations

import os
import random
import sys
import tempfile
import warnings
from collections import Counter
from collections.abc import Iterable, Iterator
from pathlib import Path

if __package__ in (None, ""):  # run as a script: make `tests` and `vreyesam` importable from the checkout
    sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

# Small limits: the fuzzer should exercise the limit checks, and an accepted image stays cheap to decode.
# (Plain numbers: nothing from vreyesam or PIL is imported at module level, so that atheris can instrument
# those modules when it imports them.)
MAX_WIDTH, MAX_HEIGHT, MAX_PIXELS = 512, 512, 200_000


class Finding(AssertionError):
    """decode_image broke its contract on an input."""


def check_one(data: bytes) -> str:
    """Run the property on one input: `decoded` or `refused`; raise Finding (or let an unexpected exception
    through) on a violation."""
    import numpy as np

    from vreyesam.runtime.media.decode import DecodeLimits, ImageInputError, decode_image

    try:
        # As in the server, where a library warning (Pillow's "Corrupt EXIF data", ...) is printed, not
        # raised: under pytest's `-W error` it would otherwise surface as an exception the server never sees.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            image = decode_image(data, DecodeLimits(MAX_WIDTH, MAX_HEIGHT, MAX_PIXELS))
    except ImageInputError as exc:
        if not isinstance(exc.message, str) or not exc.message:
            raise Finding(f"ImageInputError without a message: {exc!r}") from exc
        return "refused"
    if not isinstance(image, np.ndarray):
        raise Finding(f"returned {type(image).__name__}, not an array")
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[2] != 3:
        raise Finding(f"returned {image.dtype} {image.shape}, not HxWx3 uint8")
    height, width = image.shape[:2]
    if not (0 < width <= MAX_WIDTH and 0 < height <= MAX_HEIGHT):
        raise Finding(f"returned {width}x{height}, outside {MAX_WIDTH}x{MAX_HEIGHT}")
    if width * height > MAX_PIXELS:
        raise Finding(f"returned {width}x{height} pixels, over the limit {MAX_PIXELS}")
    if not image.flags.c_contiguous:
        raise Finding("returned a non-contiguous array")
    return "decoded"


def seed_inputs() -> dict[str, bytes]:
    from tests.reliability import corpus

    seeds = corpus.seeds()
    seeds["huge.png"] = corpus.png_declaring(50_000, 50_000)
    seeds["huge.bmp"] = corpus.bmp_declaring(50_000, 50_000)
    seeds["huge.tif"] = corpus.tiff_declaring(50_000, 50_000)
    seeds["huge.webp"] = corpus.webp_vp8x_declaring(16_000, 16_000)
    seeds["polyglot.jpg"] = corpus.jpeg_zip_polyglot()
    return seeds


# ------------------------------------------------------------------------- seeded mutations (no atheris)

_INTERESTING = [0, 1, 0x7F, 0x80, 0xFF, 0xFE]
_INTERESTING32 = [0, 1, 0x7FFFFFFF, 0x80000000, 0xFFFFFFFF, 65535, 65536, 50_000, 513]


def mutate(data: bytes, rng: random.Random) -> bytes:
    """One to four random edits: bit flips, interesting bytes/ints, truncation, duplication, insertion."""
    out = bytearray(data)
    for _ in range(rng.randint(1, 4)):
        if not out:
            out += rng.randbytes(rng.randint(1, 16))
            continue
        pos = rng.randrange(len(out))
        choice = rng.randrange(8)
        if choice == 0:
            out[pos] ^= 1 << rng.randrange(8)
        elif choice == 1:
            out[pos] = rng.choice(_INTERESTING)
        elif choice == 2 and pos + 4 <= len(out):
            value = rng.choice(_INTERESTING32)
            out[pos : pos + 4] = value.to_bytes(4, rng.choice(["big", "little"]))
        elif choice == 3:
            del out[rng.randrange(len(out)) :]  # truncate
        elif choice == 4:
            end = min(len(out), pos + rng.randint(1, 64))
            out[pos:pos] = out[pos:end] * rng.randint(1, 8)  # duplicate a slice
        elif choice == 5:
            out[pos:pos] = rng.randbytes(rng.randint(1, 32))  # insert random bytes
        elif choice == 6:
            end = min(len(out), pos + rng.randint(1, 64))
            del out[pos:end]  # delete a slice
        else:
            out[pos] = rng.randrange(256)
    return bytes(out)


def mutation_inputs(seeds: Iterable[bytes], count: int, seed: int = 0) -> Iterator[bytes]:
    rng = random.Random(seed)
    pool = list(seeds)
    for _ in range(count):
        yield mutate(rng.choice(pool), rng)


def mutation_fuzz(count: int, seed: int = 0) -> Counter[str]:
    """Run the property over the seeds and `count` mutations of them; how many were decoded and refused, and
    how many distinct inputs there were."""
    seeds = list(seed_inputs().values())
    outcomes: Counter[str] = Counter()
    seen: set[bytes] = set()
    for data in [*seeds, *mutation_inputs(seeds, count, seed)]:
        try:
            outcomes[check_one(data)] += 1
        except Exception as exc:
            raise Finding(f"input of {len(data)} bytes starting {data[:48].hex()}: {exc!r}") from exc
        seen.add(data)
    outcomes["distinct"] = len(seen)
    return outcomes


# ---------------------------------------------------------------------------------------- atheris


def _atheris_main(argv: list[str]) -> None:
    import atheris

    with atheris.instrument_imports(include=["vreyesam", "PIL"]):
        import PIL.BmpImagePlugin
        import PIL.Image
        import PIL.JpegImagePlugin
        import PIL.PngImagePlugin
        import PIL.TiffImagePlugin
        import PIL.WebPImagePlugin  # noqa: F401

        import vreyesam.runtime.media.decode  # noqa: F401

    _configure_opencv()
    corpus_dirs = [arg for arg in argv[1:] if not arg.startswith("-") and Path(arg).is_dir()]
    replay = [arg for arg in argv[1:] if not arg.startswith("-") and Path(arg).is_file()]
    if not corpus_dirs and not replay:
        corpus_dir = tempfile.mkdtemp(prefix="fuzz-decode-")
        print(f"corpus: {corpus_dir}", file=sys.stderr)
        argv = [*argv, corpus_dir]
        corpus_dirs = [corpus_dir]
    if corpus_dirs:
        for name, data in seed_inputs().items():
            path = Path(corpus_dirs[0]) / f"seed-{name}"
            if not path.exists():
                path.write_bytes(data)

    atheris.Setup(argv, check_one)
    atheris.Fuzz()


def _configure_opencv() -> None:
    from vreyesam.runtime.media.opencv import require_limits
    from vreyesam.runtime.settings import DecodeLimits

    require_limits(DecodeLimits(MAX_WIDTH, MAX_HEIGHT, MAX_PIXELS))  # before cv2 is loaded


def main(argv: list[str]) -> int:
    if len(argv) >= 2 and argv[1] == "--mutations":
        count = int(argv[2]) if len(argv) > 2 else 3000
        _configure_opencv()
        total = mutation_fuzz(count, seed=int(os.environ.get("FUZZ_SEED", "0")))
        print(f"{total} inputs, no finding")
        return 0
    _atheris_main(argv)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
