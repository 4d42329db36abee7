"""The HTTP server as a real uvicorn process, called over HTTP."""

from __future__ import annotations

import base64
import threading
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.server_harness import ServerProcess
from vreyesam.runtime.http.app import create_app
from vreyesam.runtime.media import render
from vreyesam.runtime.model.segment import STAGES
from vreyesam.runtime.settings import Settings
from vreyesam.runtime.tools import synth


@pytest.fixture(scope="module")
def server(served: ServerProcess) -> ServerProcess:
    return served


@pytest.fixture(scope="module")
def eye_png() -> bytes:
    _, image, _ = synth.generate(seed=11, n=1, width=160, height=120, mode="nir")[0]
    return render.encode_png(image)


ALL_OUTPUTS = {"outputs": "mask,probability,uncertainty,overlay", "seed": 3}


def _predict_raw(server: ServerProcess, image: bytes, params: dict) -> httpx.Response:
    return httpx.post(
        server.base_url + "/predict", params=params, content=image, headers={"content-type": "image/png"}, timeout=120
    )


@pytest.fixture(scope="module")
def full_answer(server: ServerProcess, eye_png: bytes) -> dict:
    response = _predict_raw(server, eye_png, ALL_OUTPUTS)
    assert response.status_code == 200, response.text
    return response.json()


def _png(data: str) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_UNCHANGED)


def test_health_and_readiness(server: ServerProcess) -> None:
    assert httpx.get(server.base_url + "/healthz").json() == {"status": "ok"}
    ready = httpx.get(server.base_url + "/readyz").json()
    assert ready["status"] == "ready"
    assert ready["provider"].endswith("CPUExecutionProvider")
    assert ready["model"]["precision"] in {"fp32", "bf16-encoder"}
    assert ready["model"]["version"] == "random-seed0"
    assert ready["model"]["random_weights"] is True
    assert len(ready["model"]["sha256"]) == 64
    assert "/" not in str(ready)  # no path anywhere


def test_raw_upload_json_answer(full_answer: dict) -> None:
    assert full_answer["image"] == {"width": 160, "height": 120}
    assert full_answer["parameters"] == {"points": 30, "threshold": 0.2, "seed": 3, "prompts": "sampled"}
    stats = full_answer["statistics"]
    assert set(stats) == {"coverage_percent", "area_px", "score_mean", "score_max"}
    assert set(full_answer["timings_ms"]) == {*STAGES, "total", "host", "request"}
    outputs = full_answer["outputs"]
    assert set(outputs) == {"mask", "probability", "uncertainty", "overlay"}
    mask = _png(outputs["mask"]["png_base64"])
    assert mask.shape == (120, 160) and set(np.unique(mask)) <= {0, 255}
    assert int((mask > 0).sum()) == stats["area_px"]
    assert np.array_equal(render.rle_decode(outputs["mask"]["rle"]), mask > 0)
    assert _png(outputs["probability"]["png_base64"]).shape == (120, 160)
    assert _png(outputs["uncertainty"]["png_base64"]).shape == (120, 160, 3)
    assert _png(outputs["overlay"]["png_base64"]).shape == (120, 160, 3)


def test_multipart_upload_gives_the_same_answer(server: ServerProcess, eye_png: bytes, full_answer: dict) -> None:
    response = httpx.post(
        server.base_url + "/predict",
        params=ALL_OUTPUTS,
        files={"image": ("eye.png", eye_png, "image/png")},
        timeout=120,
    )
    assert response.status_code == 200, response.text
    assert response.json()["outputs"] == full_answer["outputs"]
    assert response.json()["statistics"] == full_answer["statistics"]


def test_png_answer_with_accept_header(server: ServerProcess, eye_png: bytes, full_answer: dict) -> None:
    response = httpx.post(
        server.base_url + "/predict",
        params={"outputs": "probability", "seed": 3},
        content=eye_png,
        headers={"content-type": "application/octet-stream", "accept": "image/png"},
        timeout=120,
    )
    assert response.status_code == 200
    assert response.headers["content-type"] == "image/png"
    assert response.content == base64.b64decode(full_answer["outputs"]["probability"]["png_base64"])


@pytest.mark.parametrize(
    ("params", "name"),
    [
        ({"points": 0}, "points"),
        ({"points": 65}, "points"),
        ({"points": "many"}, "points"),
        ({"threshold": -0.01}, "threshold"),
        ({"threshold": 1.5}, "threshold"),
        ({"seed": -1}, "seed"),
        ({"outputs": "mask,secrets"}, "outputs"),
        ({"prompts": "1,2,3"}, "prompts"),
        ({"prompts": "5000,5"}, "prompts"),
    ],
)
def test_parameters_beyond_bounds(server: ServerProcess, eye_png: bytes, params: dict, name: str) -> None:
    response = httpx.post(
        server.base_url + "/predict", params=params, content=eye_png, headers={"content-type": "image/png"}
    )
    assert response.status_code == 422
    error = response.json()["error"]
    assert error["code"] == "invalid_parameter"
    assert f"'{name}'" in error["message"]


def test_parameters_at_bounds_and_explicit_prompts(server: ServerProcess, eye_png: bytes) -> None:
    for params in ({"points": 1, "threshold": 0.0}, {"points": 64, "threshold": 1.0}, {"prompts": "80,60;0,0;159,119"}):
        response = httpx.post(
            server.base_url + "/predict",
            params=params,
            content=eye_png,
            headers={"content-type": "image/png"},
            timeout=120,
        )
        assert response.status_code == 200, (params, response.text)
    assert response.json()["parameters"]["prompts"] == "explicit"
    assert response.json()["parameters"]["points"] == 3


def test_same_image_same_answer(server: ServerProcess, eye_png: bytes, full_answer: dict) -> None:
    again = _predict_raw(server, eye_png, ALL_OUTPUTS).json()
    assert again["outputs"] == full_answer["outputs"]


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/index.html", 404),  # `/` is the page (test_page.py); nothing else is a file
        ("POST", "/", 405),
        ("GET", "/docs", 404),
        ("GET", "/openapi.json", 404),
        ("GET", "/redoc", 404),
        ("GET", "/manifest.json", 404),
        ("GET", "/model/encoder.onnx", 404),
        ("GET", "/../manifest.json", 404),
        ("GET", "/predict", 405),
        ("PUT", "/predict", 405),
        ("DELETE", "/healthz", 405),
        ("POST", "/readyz", 405),
    ],
)
def test_nothing_but_the_api_and_the_page(server: ServerProcess, method: str, path: str, status: int) -> None:
    response = httpx.request(method, server.base_url + path)
    assert response.status_code == status
    assert response.json()["error"]["code"] in {"not_found", "method_not_allowed"}
    assert "server" not in response.headers


def test_wrong_content_type_and_empty_body(server: ServerProcess, eye_png: bytes) -> None:
    response = httpx.post(server.base_url + "/predict", content=eye_png, headers={"content-type": "text/plain"})
    assert response.status_code == 415
    response = httpx.post(server.base_url + "/predict", content=b"", headers={"content-type": "image/png"})
    assert response.status_code == 415
    assert response.json()["error"]["code"] == "unsupported_format"
    response = httpx.post(server.base_url + "/predict", files={"other": ("x.png", eye_png, "image/png")})
    assert response.status_code == 422
    assert response.json()["error"]["code"] == "missing_image"


def test_png_accept_needs_one_output(server: ServerProcess, eye_png: bytes) -> None:
    response = httpx.post(
        server.base_url + "/predict",
        params={"outputs": "mask,overlay"},
        content=eye_png,
        headers={"content-type": "image/png", "accept": "image/png"},
    )
    assert response.status_code == 406


def test_readiness_before_and_after_loading(model_dir: Path) -> None:
    """The real app: /healthz answers and /readyz says loading until the model is there."""
    release = threading.Event()

    def slow_loader():
        release.wait(timeout=30)
        from vreyesam.runtime.model.loader import LoadOptions, load_segmenter

        return load_segmenter(model_dir, LoadOptions(device="cpu", allow_random_weights=True))

    app = create_app(Settings(model_dir=model_dir, allow_random_weights=True), slow_loader)
    with TestClient(app) as client:
        assert client.get("/healthz").status_code == 200
        loading = client.get("/readyz")
        assert loading.status_code == 503 and loading.json()["error"]["code"] == "model_loading"
        assert client.post("/predict", content=b"x", headers={"content-type": "image/png"}).status_code == 503
        release.set()
        for _ in range(300):
            if client.get("/readyz").status_code == 200:
                break
            threading.Event().wait(0.2)
        assert client.get("/readyz").json()["status"] == "ready"


def test_failed_load_reports_not_ready() -> None:
    failures = []

    def broken_loader():
        raise RuntimeError("boom /secret/path")

    app = create_app(Settings(), broken_loader, on_load_failure=lambda: failures.append(True))
    with TestClient(app) as client:
        for _ in range(50):
            if failures:
                break
            threading.Event().wait(0.05)
        response = client.get("/readyz")
        assert response.status_code == 503
        assert response.json()["error"]["code"] == "model_failed"
        assert "secret" not in response.text
    assert failures == [True]


def test_http_answer_equals_command_line_files(
    model_dir: Path, tmp_path: Path, eye_png: bytes, full_answer: dict
) -> None:
    from vreyesam.cli import main

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "eye.png").write_bytes(eye_png)
    out = tmp_path / "out"
    code = main(
        [
            "predict",
            "--model",
            str(model_dir),
            str(tmp_path / "in"),
            "--out",
            str(out),
            "--seed",
            "3",
            "--overlay",
            "--allow-random-weights",
        ]
    )
    assert code == 0
    http_name = {"binary": "mask", "probability": "probability", "uncertainty": "uncertainty", "overlay": "overlay"}
    for kind, name in http_name.items():
        assert (out / kind / "eye.png").read_bytes() == base64.b64decode(full_answer["outputs"][name]["png_base64"])
