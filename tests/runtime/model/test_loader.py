"""Loading a model directory: every artifact read once, the engines built from the very bytes verified."""

from __future__ import annotations

import collections
import inspect
import json
import shutil
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from tests.model_files import open_model_files
from vreyesam.runtime.engines import onnxruntime_graph
from vreyesam.runtime.engines.devices import cuda_device_count
from vreyesam.runtime.manifest import DECODER, GRAPHS, MANIFEST_NAME, read_manifest, sha256_hex
from vreyesam.runtime.model import variants
from vreyesam.runtime.model.artifacts import ModelLoadError, read_model_files, servable_manifest
from vreyesam.runtime.model.batching import UNBATCHED, BatchPolicy
from vreyesam.runtime.model.loader import (
    LoadOptions,
    Shapes,
    artifacts_for,
    load_options,
    load_segmenter,
    plan,
    shapes_for,
)
from vreyesam.runtime.settings import Settings

FP32 = LoadOptions(device="cpu", precision="fp32", allow_random_weights=True, self_test=False)


def test_each_artifact_is_read_once_and_the_engines_get_the_verified_bytes(
    model_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    reads: collections.Counter[str] = collections.Counter()
    original_read = Path.read_bytes

    def counting_read(path: Path) -> bytes:
        reads[path.name] += 1
        return original_read(path)

    built: list[str] = []
    original_init = onnxruntime_graph.OnnxRuntimeGraph.__init__

    def recording_init(self: object, model: bytes, *args: object) -> None:
        built.append(sha256_hex(model))
        original_init(self, model, *args)  # type: ignore[arg-type]

    manifest = read_manifest(model_dir)
    monkeypatch.setattr(Path, "read_bytes", counting_read)
    monkeypatch.setattr(onnxruntime_graph.OnnxRuntimeGraph, "__init__", recording_init)
    load_segmenter(model_dir, FP32)
    # The manifest and what fp32 is built and checked from, each read once; nothing else (the fp16 encoder,
    # the calibration set).
    expected = {manifest.artifacts[role].file: 1 for role in artifacts_for(variants.fp32(manifest))}
    assert reads == {MANIFEST_NAME: 1, **expected}
    # The onnxruntime graphs, in order; on the CPU the decoder has a session fixed to one prompt per call and
    # a general one (engines.shaped), the encoder only one fixed to a lone image.
    sessions = {DECODER: 2}
    assert built == [manifest.artifacts[role].sha256 for role in GRAPHS for _ in range(sessions.get(role, 1))]


@pytest.mark.parametrize(
    ("on_cpu", "batch", "expected"),
    [
        (True, 1, Shapes(encoder=(1,), encoder_general=False, encoder_padded=False, decoder=(1,))),
        (True, 8, Shapes(encoder=(), encoder_general=True, encoder_padded=False, decoder=(1,))),
        (False, 1, Shapes((1,), encoder_general=False, encoder_padded=False, decoder=(30,), procedure=(30,))),
        (False, 8, Shapes((1, 2, 4, 8), encoder_general=False, encoder_padded=True, decoder=(30,), procedure=(30,))),
        (
            False,
            12,
            Shapes((1, 2, 4, 8, 12), encoder_general=False, encoder_padded=True, decoder=(30,), procedure=(30,)),
        ),
    ],
)
def test_sessions_are_fixed_to_the_sizes_served(on_cpu: bool, batch: int, expected: Shapes) -> None:
    options = LoadOptions(encoder_batch=BatchPolicy(max_images=batch))
    assert shapes_for(options, on_cpu, default_points=30) == expected


def test_the_served_graphs_hold_no_free_axis_where_a_size_is_fixed(segmenter) -> None:
    assert segmenter.encoder.fixed_sizes == (1,)
    assert segmenter.decoder.fixed_sizes == (1,)


def test_the_decoder_batch_follows_the_device(segmenter) -> None:
    assert segmenter.decoder_batch == 1  # one prompt per call on the CPU (measured faster)
    assert segmenter.engines == "CPUExecutionProvider" and segmenter.precision == "fp32"


def test_the_cpu_decoder_copies_each_chunk_out_before_the_next(segmenter, monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime outputs held until the last chunk kept ~12-18 MB of their runs alive each (a server's peak
    RSS 1.81 GB instead of 1.26 GB): each chunk's outputs go to the host before the next chunk runs."""
    calls: list[str] = []
    decoder = segmenter.decoder
    run, to_host = decoder.run, decoder.to_host
    monkeypatch.setattr(decoder, "run", lambda *args: calls.append("run") or run(*args))
    monkeypatch.setattr(decoder, "to_host", lambda value: calls.append("copy") or to_host(value))
    image = np.random.default_rng(0).integers(0, 256, (300, 400, 3), dtype=np.uint8)
    features = segmenter.encode(segmenter.prepare(image))
    decoded = segmenter.decode(features, np.full((3, 1, 2), 512.0, dtype=np.float32))
    assert calls == ["run", "copy", "copy"] * 3  # logits and scores of one chunk, then the next
    assert type(decoded.logits) is np.ndarray and decoded.logits.shape == (3, 256, 256)
    assert decoded.scores.shape == (3,)


@pytest.fixture
def copy_of_model(model_dir: Path, tmp_path: Path) -> Path:
    """The test model with the encoder linked (it is never changed here) and the other files copied."""
    target = tmp_path / "model"
    target.mkdir()
    for item in model_dir.iterdir():
        if item.name == "encoder.onnx":
            (target / item.name).symlink_to(item.resolve())
        else:
            shutil.copyfile(item, target / item.name)
    return target


@pytest.mark.parametrize(
    ("damage", "message"),
    [
        ("missing", "model directory failed verification: decoder artifact is missing"),
        ("changed", "model directory failed verification: decoder artifact does not match its sha256"),
        ("no-manifest", "model directory failed verification: model directory has no manifest"),
        ("bad-manifest", "model directory failed verification: manifest is unreadable"),
    ],
)
def test_a_damaged_directory_is_refused_with_a_safe_message(copy_of_model: Path, damage: str, message: str) -> None:
    decoder = copy_of_model / "decoder.onnx"
    if damage == "missing":
        decoder.unlink()
    elif damage == "changed":
        decoder.write_bytes(decoder.read_bytes()[:-1] + b"\x00")
    elif damage == "no-manifest":
        (copy_of_model / MANIFEST_NAME).unlink()
    else:
        (copy_of_model / MANIFEST_NAME).write_text("{not json")
    with pytest.raises(ModelLoadError) as refused:
        open_model_files(copy_of_model)
    assert str(refused.value) == message


def test_random_weights_need_permission(model_dir: Path) -> None:
    with pytest.raises(ModelLoadError, match="set VREYESAM_ALLOW_RANDOM_WEIGHTS=1 to serve it"):
        open_model_files(model_dir, allow_random_weights=False)


def test_an_artifact_named_outside_the_directory_is_refused(copy_of_model: Path) -> None:
    raw = json.loads((copy_of_model / MANIFEST_NAME).read_text())
    raw["artifacts"]["decoder"]["file"] = "../decoder.onnx"
    (copy_of_model / MANIFEST_NAME).write_text(json.dumps(raw))
    with pytest.raises(ModelLoadError, match="names an artifact outside the model directory"):
        open_model_files(copy_of_model)


def test_graph_bytes_are_handed_over_once(model_dir: Path) -> None:
    files = open_model_files(model_dir)
    assert files.take_graph("decoder") == (model_dir / "decoder.onnx").read_bytes()
    with pytest.raises(RuntimeError, match="the decoder graph was already handed over"):
        files.take_graph("decoder")


def test_the_files_open_only_through_the_servable_check(model_dir: Path) -> None:
    """Every caller says which signing key the directory must match (None: none), and the artifacts are
    read only for a manifest that passed that check: a bare manifest does not open them."""
    assert inspect.signature(servable_manifest).parameters["trust"].default is inspect.Parameter.empty
    with pytest.raises(TypeError, match="not a bare manifest"):
        read_model_files(model_dir, read_manifest(model_dir))  # type: ignore[arg-type]


def test_load_options_refuse_a_malformed_key() -> None:
    with pytest.raises(ModelLoadError, match="model key must be 32 bytes as hex or base64"):
        load_options(Settings(model_key="not a key"))
    assert load_options(Settings(model_key="00" * 32)).model_key == bytes(32)


@pytest.mark.skipif(cuda_device_count() > 0, reason="this machine has a GPU")
def test_a_device_that_is_not_there_is_refused(model_dir: Path) -> None:
    manifest = read_manifest(model_dir)
    with pytest.raises(ModelLoadError, match="device 'cuda' requested but no GPU is usable here"):
        plan(manifest, LoadOptions(device="cuda"))
    providers, choice = plan(manifest, LoadOptions(device="cpu", precision="fp32"))
    assert providers == ["CPUExecutionProvider"] and choice.name == "fp32"


def test_encoder_batching_is_off_unless_set_and_the_self_test_passes_through_it(model_dir: Path) -> None:
    assert load_options(Settings()).encoder_batch == UNBATCHED
    options = load_options(Settings(encoder_batch=2, encoder_batch_window_ms=1.0))
    assert options.encoder_batch == BatchPolicy(max_images=2, window_ms=1.0)
    loaded = load_segmenter(model_dir, replace(options, device="cpu", precision="fp32", allow_random_weights=True))
    assert loaded.batches is not None and loaded.batches.runs >= 1  # the golden self-test ran batched
