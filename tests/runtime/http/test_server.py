"""The HTTP API through the real app, in process: answers, parameters, errors and routes.

The app is `create_app` over the session's model (`segmenter`: fp32 on the CPU) with the shared server's
limits and the real per-image function, its lifespan run in process (tests/app_harness.py). Every error
answer is checked for its exact status, code and JSON shape, and for leaking nothing (no traceback text,
path, library name or version). What needs a real `vreyesam serve` process is elsewhere: signals and
broken models (tests/reliability/test_faults.py), the JSON logs (test_hardening.py), the body cap against
real clients (test_body_limit.py), hostile uploads (tests/reliability/test_bad_inputs.py), the page in a
browser (test_page_browser.py).
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.app_harness import canned_segmentation, loader_of, running_app
from tests.reliability.http_checks import assert_clean_error
from tests.server_harness import SHARED_SERVER_LIMITS
from vreyesam.runtime.media import render
from vreyesam.runtime.media.iris import iris_fields, iris_geometry
from vreyesam.runtime.media.quality import DEFAULT_GATE, image_measures, judge
from vreyesam.runtime.model.segment import Segmentation, SegmentRequest
from vreyesam.runtime.model.segmenter import Segmenter
from vreyesam.runtime.settings import DecodeLimits, load_settings
from vreyesam.runtime.tools import synth
from vreyesam.runtime.vocabulary import STAGES

SETTINGS = load_settings(SHARED_SERVER_LIMITS)
MAX_BODY = SETTINGS.max_body_bytes
ALL_OUTPUTS = {"outputs": "mask,probability,uncertainty,overlay,iris", "seed": 3}


@pytest.fixture(scope="module")
def api(segmenter: Segmenter) -> Iterator[TestClient]:
    with running_app(SETTINGS, loader_of(segmenter)) as running:
        running.wait_ready()
        yield running.client


@pytest.fixture(scope="module")
def eye_png() -> bytes:
    _, image, _ = synth.generate(seed=11, n=1, width=160, height=120, mode="nir")[0]
    return render.encode_png(image)


def _predict(api: TestClient, image: bytes, params: dict, headers: dict[str, str] | None = None) -> httpx.Response:
    return api.post("/predict", params=params, content=image, headers={"content-type": "image/png", **(headers or {})})


def _assert_error(response: httpx.Response, status: int, code: str) -> dict[str, str]:
    assert_clean_error(response.status_code, response.headers, response.content, status, code)
    return response.json()["error"]


@pytest.fixture(scope="module")
def full_answer(api: TestClient, eye_png: bytes) -> dict:
    response = _predict(api, eye_png, ALL_OUTPUTS)
    assert response.status_code == 200, response.text
    return response.json()


def _png(data: str) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(base64.b64decode(data), np.uint8), cv2.IMREAD_UNCHANGED)


def test_raw_upload_json_answer(full_answer: dict, segmenter: Segmenter) -> None:
    assert full_answer["image"] == {"width": 160, "height": 120}
    manifest = segmenter.manifest
    assert full_answer["model"] == {
        "name": manifest.model_name,
        "version": "random-seed0",
        "sha256": manifest.model_sha256,
    }
    assert full_answer["parameters"] == {"points": 30, "threshold": 0.2, "seed": 3, "prompts": "sampled"}
    stats = full_answer["statistics"]
    assert set(stats) == {"coverage_percent", "area_px", "score_mean", "score_max"}
    assert list(full_answer["timings_ms"]) == ["queue", *STAGES, "total", "host", "request"]
    outputs = full_answer["outputs"]
    assert set(outputs) == {"mask", "probability", "uncertainty", "overlay", "iris"}
    mask = _png(outputs["mask"]["png_base64"])
    assert mask.shape == (120, 160) and set(np.unique(mask)) <= {0, 255}
    assert int((mask > 0).sum()) == stats["area_px"]
    assert stats["coverage_percent"] == pytest.approx(100.0 * stats["area_px"] / (160 * 120))
    assert np.array_equal(render.rle_decode(outputs["mask"]["rle"]), mask > 0)
    assert _png(outputs["probability"]["png_base64"]).shape == (120, 160)
    assert _png(outputs["uncertainty"]["png_base64"]).shape == (120, 160, 3)
    assert _png(outputs["overlay"]["png_base64"]).shape == (120, 160, 3)


def test_the_iris_output_is_the_image_cut_out_by_the_answers_mask(full_answer: dict, eye_png: bytes) -> None:
    mask = _png(full_answer["outputs"]["mask"]["png_base64"]) > 0
    image = cv2.cvtColor(cv2.imdecode(np.frombuffer(eye_png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    cut = cv2.cvtColor(_png(full_answer["outputs"]["iris"]["png_base64"]), cv2.COLOR_BGRA2RGBA)
    rows, columns = np.nonzero(mask)
    assert len(rows), "the test model's mask is empty: nothing to cut out"
    top, bottom, left, right = rows.min(), rows.max() + 1, columns.min(), columns.max() + 1
    window = mask[top:bottom, left:right]
    assert cut.shape == (*window.shape, 4)
    assert np.array_equal(cut[..., 3], np.where(window, 255, 0))
    assert np.array_equal(cut[window][:, :3], image[top:bottom, left:right][window])
    assert not cut[~window].any()


def test_the_iris_block_and_verdict_are_measured_on_the_answers_mask(full_answer: dict, eye_png: bytes) -> None:
    mask = _png(full_answer["outputs"]["mask"]["png_base64"]) > 0
    image = cv2.cvtColor(cv2.imdecode(np.frombuffer(eye_png, np.uint8), cv2.IMREAD_COLOR), cv2.COLOR_BGR2RGB)
    geometry = iris_geometry(mask)
    measures = image_measures(image, mask, geometry.bbox)
    assert full_answer["iris"] == json.loads(json.dumps({**iris_fields(geometry), **asdict(measures)}))
    quality = judge(geometry, measures, DEFAULT_GATE)
    assert full_answer["quality"] == {"accepted": quality.accepted, "reasons": list(quality.reasons)}


def test_multipart_upload_gives_the_same_answer(api: TestClient, eye_png: bytes, full_answer: dict) -> None:
    """The same image and parameters sent again, as a form: the same answer (so also: the answer is repeatable)."""
    response = api.post("/predict", params=ALL_OUTPUTS, files={"image": ("eye.png", eye_png, "image/png")})
    assert response.status_code == 200, response.text
    assert response.json()["outputs"] == full_answer["outputs"]
    assert response.json()["statistics"] == full_answer["statistics"]


def test_png_answer_with_accept_header(api: TestClient, eye_png: bytes, full_answer: dict) -> None:
    response = api.post(
        "/predict",
        params={"outputs": "probability", "seed": 3},
        content=eye_png,
        headers={"content-type": "application/octet-stream", "accept": "image/png"},
    )
    assert response.status_code == 200, response.text
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
        ({"outputs": ""}, "outputs"),
        ({"prompts": "1,2,3"}, "prompts"),
        ({"prompts": "5000,5"}, "prompts"),  # a point off the 160x120 image
    ],
)
def test_parameters_beyond_bounds(api: TestClient, eye_png: bytes, params: dict, name: str) -> None:
    error = _assert_error(_predict(api, eye_png, params), 422, "invalid_parameter")
    assert f"parameter '{name}'" in error["message"], error


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"points": 65}, "parameter 'points' must be a whole number from 1 to 64"),
        ({"threshold": 1.5}, "parameter 'threshold' must be a number from 0 to 1"),
        ({"seed": -1}, "parameter 'seed' must be a whole number from 0 to 2^63 - 1"),
    ],
)
def test_bounds_are_said_in_the_words_the_command_line_uses(
    api: TestClient, eye_png: bytes, params: dict, message: str
) -> None:
    """One check of the request's bounds (SegmentRequest) for every caller: `vreyesam predict` refuses the same
    values with the same sentence (tests/runtime/tools/test_predict.py)."""
    assert _assert_error(_predict(api, eye_png, params), 422, "invalid_parameter")["message"] == message


class _Recorder:
    """A per-image function that keeps what each request asked for and answers without inference."""

    def __init__(self) -> None:
        self.requests: list[tuple[SegmentRequest, DecodeLimits]] = []

    def __call__(
        self, segmenter: Segmenter, data: bytes, request: SegmentRequest, limits: DecodeLimits
    ) -> Segmentation:
        self.requests.append((request, limits))
        return canned_segmentation(segmenter, data, request, limits)


def test_parameters_at_bounds_reach_the_model_as_given(segmenter: Segmenter, eye_png: bytes) -> None:
    recorder = _Recorder()
    with running_app(SETTINGS, loader_of(segmenter), segment_function=recorder) as running:
        running.wait_ready()
        for params in ({"points": 1, "threshold": 0.0, "seed": 0}, {"points": 64, "threshold": 1.0}, {}):
            response = _predict(running.client, eye_png, params)
            assert response.status_code == 200, (params, response.text)
    (low, limits), (high, _), (unset, _) = recorder.requests
    assert (low.points, low.threshold, low.seed, low.prompts) == (1, 0.0, 0, None)
    assert (high.points, high.threshold, high.seed) == (64, 1.0, None)
    assert (unset.points, unset.threshold, unset.seed) == (None, None, None)  # the model's defaults decide
    assert low.outputs == ("mask",) and low.mask_rle
    assert limits == SETTINGS.decode_limits


def test_explicit_prompts(api: TestClient, eye_png: bytes) -> None:
    response = _predict(api, eye_png, {"prompts": "80,60;0,0;159,119"})
    assert response.status_code == 200, response.text
    assert response.json()["parameters"] == {"points": 3, "threshold": 0.2, "seed": 0, "prompts": "explicit"}


CODES = {404: "not_found", 405: "method_not_allowed"}


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
def test_nothing_but_the_api_and_the_page(api: TestClient, method: str, path: str, status: int) -> None:
    error = _assert_error(api.request(method, path), status, CODES[status])
    assert error["message"] == CODES[status].replace("_", " ")


@pytest.mark.parametrize(
    ("content_type", "body", "status", "code"),
    [
        ("text/plain", b"\x89PNG\r\n\x1a\n", 415, "unsupported_media_type"),
        (None, b"\x89PNG\r\n\x1a\n", 415, "unsupported_media_type"),
        ("image/png", b"", 415, "unsupported_format"),
    ],
    ids=["text-plain", "no-content-type", "empty-body"],
)
def test_what_is_not_an_image_upload(
    api: TestClient, content_type: str | None, body: bytes, status: int, code: str
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    _assert_error(api.post("/predict", content=body, headers=headers), status, code)


def test_a_multipart_body_without_the_image_field(api: TestClient, eye_png: bytes) -> None:
    response = api.post("/predict", files={"other": ("x.png", eye_png, "image/png")})
    error = _assert_error(response, 422, "missing_image")
    assert error["message"] == "multipart body has no file field 'image'"


def test_png_accept_needs_one_output(api: TestClient, eye_png: bytes) -> None:
    response = _predict(api, eye_png, {"outputs": "mask,overlay"}, {"accept": "image/png"})
    error = _assert_error(response, 406, "not_acceptable")
    assert error["message"] == "Accept: image/png needs exactly one output"


@pytest.mark.parametrize("size", [MAX_BODY + 1, 3 * MAX_BODY])
def test_a_body_over_the_cap(api: TestClient, size: int) -> None:
    response = api.post(
        "/predict", content=b"\x89PNG\r\n\x1a\n" + bytes(size - 8), headers={"content-type": "image/png"}
    )
    error = _assert_error(response, 413, "body_too_large")
    assert error["message"] == f"request body is larger than {MAX_BODY} bytes"
    assert response.headers["connection"] == "close"


def test_a_body_at_the_cap_is_read(api: TestClient) -> None:
    # Exactly the cap passes the body limit and reaches the decoder, which refuses what is not an image.
    response = api.post(
        "/predict", content=b"\x89PNG\r\n\x1a\n" + bytes(MAX_BODY - 8), headers={"content-type": "image/png"}
    )
    _assert_error(response, 422, "undecodable_image")


def test_http_answer_equals_command_line_files(
    model_dir: Path, tmp_path: Path, eye_png: bytes, full_answer: dict
) -> None:
    from vreyesam.cli import main

    (tmp_path / "in").mkdir()
    (tmp_path / "in" / "eye.png").write_bytes(eye_png)
    out = tmp_path / "out"
    # The same variant as the app's model (fp32 on the CPU): the two paths must write the same bytes.
    arguments = ["predict", "--model", str(model_dir), str(tmp_path / "in"), "--out", str(out), "--seed", "3"]
    code = main([*arguments, "--overlay", "--allow-random-weights", "--device", "cpu", "--precision", "fp32"])
    assert code == 0
    http_name = {"binary": "mask", "probability": "probability", "uncertainty": "uncertainty", "overlay": "overlay"}
    for kind, name in http_name.items():
        assert (out / kind / "eye.png").read_bytes() == base64.b64decode(full_answer["outputs"][name]["png_base64"])
