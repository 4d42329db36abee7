"""Structured logs and encrypted models, through real `vreyesam serve` processes: the serve command sets up
the JSON logging and refuses a model it cannot decrypt before its port opens. (What API keys let through is
tested in process, in test_auth.py; here a server with keys shows that no key reaches its log.)"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.app_harness import wait_for
from tests.server_harness import ServerProcess, ready_server, serve_to_exit
from vreyesam.runtime.manifest import GRAPHS, MANIFEST_NAME, sha256_hex
from vreyesam.runtime.media import render
from vreyesam.runtime.model import crypto
from vreyesam.runtime.model.segment import SegmentRequest, segment
from vreyesam.runtime.model.segmenter import Segmenter
from vreyesam.runtime.tools.synth import generate

API_KEY = "k-0123456789abcdef-test"


@pytest.fixture(scope="module")
def keyed_server(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    directory = tmp_path_factory.mktemp("keyed")
    keys = directory / "api_keys"
    keys.write_text(f"# one key per line\n{API_KEY}\nanother-key-0123456789\n")
    env = {"VREYESAM_ALLOW_RANDOM_WEIGHTS": "1", "VREYESAM_API_KEYS_FILE": str(keys)}
    with ready_server(model_dir, directory / "server.log", env=env) as proc:
        yield proc


def test_logs_are_json_with_request_ids_and_no_paths(keyed_server: ServerProcess, model_dir: Path) -> None:
    response = httpx.get(keyed_server.base_url + "/healthz", headers={"x-request-id": "trace-42"})
    assert response.headers["x-request-id"] == "trace-42"
    generated = httpx.get(keyed_server.base_url + "/healthz", headers={"x-request-id": "bad id\twith tab"})
    assert generated.headers["x-request-id"] != "bad id\twith tab" and len(generated.headers["x-request-id"]) == 32
    # A path trying to forge a log line of its own: a newline, then an error record without ts or logger.
    httpx.get(keyed_server.base_url + "/%0a%7B%22level%22%3A%22error%22%2C%22message%22%3A%22forged%22%7D")
    wrong_key = httpx.post(
        keyed_server.base_url + "/predict", content=b"x", headers={"x-api-key": API_KEY * 3, "x-request-id": "last-1"}
    )
    assert wrong_key.status_code == 401
    # Each access line is written after its answer: the last request's line in the log means every line
    # these requests caused is there, and the checks below see them all.
    wait_for(lambda: '"request_id": "last-1"' in keyed_server.log(), "the last request's access line")
    lines = [line for line in keyed_server.log().splitlines() if line.strip()]
    records = [json.loads(line) for line in lines]  # every line is one JSON object
    assert all({"ts", "level", "logger", "message"} <= set(record) for record in records), records
    assert not any(record["message"] == "forged" for record in records)
    requests = [r for r in records if r["message"] == "request"]
    traced = [r for r in requests if r["request_id"] == "trace-42"]
    assert traced and traced[0]["route"] == "healthz" and traced[0]["status"] == 200
    assert {"method", "route", "status", "duration_ms", "bytes_in"} <= set(traced[0])
    assert any(r["route"] == "other" and r["status"] == 404 for r in requests)
    text = keyed_server.log()
    assert str(model_dir) not in text and API_KEY not in text and "Traceback" not in text


@pytest.fixture(scope="module")
def encrypted_model(model_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """A copy of the model with AES-GCM graphs, laid out as `vreyesam export --encrypt` writes it."""
    target = tmp_path_factory.mktemp("sealed") / "model"
    shutil.copytree(model_dir, target)
    key_text = crypto.new_key_text()
    raw = json.loads((target / MANIFEST_NAME).read_text())
    for role in GRAPHS:
        plain = target / raw["artifacts"][role]["file"]
        sealed = plain.with_name(plain.name + ".enc")
        sealed.write_bytes(crypto.encrypt(plain.read_bytes(), crypto.parse_key(key_text), role))
        plain.unlink()
        raw["artifacts"][role].update(file=sealed.name, sha256=sha256_hex(sealed), bytes=sealed.stat().st_size)
    raw["encrypted"] = True
    (target / MANIFEST_NAME).write_text(json.dumps(raw))
    return target, key_text


def test_encrypted_model_refuses_missing_or_wrong_key(encrypted_model: tuple[Path, str], tmp_path: Path) -> None:
    model, _ = encrypted_model
    missing = serve_to_exit(model, "--allow-random-weights")
    assert missing.returncode == 1
    assert missing.stderr.strip() == (
        "vreyesam serve: error: the model is encrypted: set VREYESAM_MODEL_KEY_FILE (or VREYESAM_MODEL_KEY)"
    )
    wrong_key = tmp_path / "wrong.key"
    wrong_key.write_text(crypto.new_key_text())
    wrong = serve_to_exit(model, "--allow-random-weights", env={"VREYESAM_MODEL_KEY_FILE": str(wrong_key)})
    assert wrong.returncode == 1
    assert wrong.stderr.strip() == "vreyesam serve: error: the model key does not decrypt the model"


def test_encrypted_model_serves_with_its_key(
    encrypted_model: tuple[Path, str], segmenter: Segmenter, tmp_path: Path
) -> None:
    """With its key the encrypted model serves, and answers exactly as the same model in the clear."""
    model, key_text = encrypted_model
    key_file = tmp_path / "model.key"
    key_file.write_text(key_text)
    _, eye, _ = generate(seed=12, n=1, width=160, height=120)[0]
    image = render.encode_png(eye)
    request = SegmentRequest(points=3, outputs=("mask",))
    expected = segment(segmenter, image, request).pngs["mask"]
    # fp32, as the session's `segmenter` (a CPU with native bf16 would otherwise serve `bf16-encoder`).
    env = {"VREYESAM_ALLOW_RANDOM_WEIGHTS": "1", "VREYESAM_MODEL_KEY_FILE": str(key_file), "VREYESAM_PRECISION": "fp32"}
    with ready_server(model, tmp_path / "server.log", env=env) as proc:
        assert httpx.get(proc.base_url + "/readyz").json()["status"] == "ready"
        answer = httpx.post(
            proc.base_url + "/predict",
            params={"points": 3, "outputs": "mask"},
            content=image,
            headers={"content-type": "image/png", "accept": "image/png"},
            timeout=120,
        )
    assert answer.status_code == 200 and answer.content == expected
    assert key_text not in proc.log()
