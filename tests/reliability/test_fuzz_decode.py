"""Fuzzing `decode_image` for a bounded time: any input gives an HxWx3 uint8 array or ImageInputError.

Two runs of the same property (tests/reliability/fuzz_decode.py):
- coverage-guided with atheris (libFuzzer), in a subprocess for 20 s, when atheris is installed;
- a seeded random-mutation loop (3000 mutations of JPEG/PNG/BMP/TIFF/WebP seed images), in-process,
  always: deterministic, a few seconds, and the fallback where atheris has no wheel.
For a longer run: `python tests/reliability/fuzz_decode.py -max_total_time=600`.
"""

from __future__ import annotations

import importlib.util
import resource
import subprocess
import sys
from pathlib import Path

import pytest

from tests.reliability import fuzz_decode

HARNESS = Path(fuzz_decode.__file__)
ATHERIS_SECONDS = 20


def test_seed_images_decode() -> None:
    # The seeds are valid images of every allowed format: the property holds and each decodes to pixels.
    for name, data in fuzz_decode.seed_inputs().items():
        fuzz_decode.check_one(data)
        if not name.startswith(("huge", "polyglot")):
            from vreyesam.runtime.media.decode import decode_image

            assert decode_image(data).shape == (24, 32, 3), name


def test_seeded_mutations() -> None:
    """3000 mutations of the seed corpus hold the property; the run is worth its name: every input was
    checked, most are new bytes, and the mutations reach both outcomes (some still decode, others are
    refused), so the decoder itself, not only its magic-byte check, sees broken input."""
    outcomes = fuzz_decode.mutation_fuzz(3000, seed=0)
    seeds = len(fuzz_decode.seed_inputs())
    assert outcomes["decoded"] + outcomes["refused"] == seeds + 3000
    assert outcomes["distinct"] >= 2500, outcomes
    assert outcomes["decoded"] > seeds and outcomes["refused"] > 100, outcomes


@pytest.mark.skipif(importlib.util.find_spec("atheris") is None, reason="atheris is not installed")
def test_atheris_bounded_run(tmp_path: Path) -> None:
    corpus_dir = tmp_path / "corpus"
    corpus_dir.mkdir()
    # libFuzzer reads peak RSS with getrusage, and Linux carries the parent's peak into a child across
    # vfork+exec: this pytest process, having loaded models, may already be near 3 GB. The limit is on
    # what the harness adds on top of that.
    inherited_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024
    rss_limit_mb = max(3072, inherited_mb + 2048)
    result = subprocess.run(
        [
            sys.executable,
            str(HARNESS),
            str(corpus_dir),
            f"-max_total_time={ATHERIS_SECONDS}",
            "-seed=1",
            "-timeout=20",  # seconds per input: a hang is a finding
            f"-rss_limit_mb={rss_limit_mb}",
            "-malloc_limit_mb=2048",  # any single allocation over 2 GB is a finding regardless
            "-max_len=65536",
            "-print_final_stats=1",
        ],
        cwd=tmp_path,  # a finding is written here as crash-*/timeout-*/oom-*
        capture_output=True,
        text=True,
        timeout=ATHERIS_SECONDS + 120,
        check=False,
    )
    tail = result.stderr[-4000:]
    findings = sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(("crash-", "timeout-", "oom-", "leak-")))
    assert result.returncode == 0 and not findings, f"exit {result.returncode}, findings {findings}:\n{tail}"
    assert "Done " in result.stderr, tail
    assert any(corpus_dir.iterdir())
