"""Readiness, in process: /healthz answers from the start, /readyz says loading until the model is there,
and a model that fails to load is reported (`model_failed`) and stops the server (`on_load_failure`).

The loaders here are held on events or fail at once: nothing waits for a model to load but the real one's
test, which waits for the event that says it has.
"""

from __future__ import annotations

import threading

import httpx
import pytest

from tests.app_harness import DEADLINE_S, running_app
from tests.reliability.http_checks import assert_clean_error
from vreyesam.runtime.model.artifacts import ModelLoadError
from vreyesam.runtime.model.segmenter import Segmenter
from vreyesam.runtime.settings import Settings


def _assert_error(response: httpx.Response, status: int, code: str, message: str) -> None:
    assert_clean_error(response.status_code, response.headers, response.content, status, code)
    assert response.json()["error"]["message"] == message


def _post_image(client) -> httpx.Response:
    return client.post("/predict", content=b"\x89PNG\r\n\x1a\n", headers={"content-type": "image/png"})


def test_loading_then_ready(segmenter: Segmenter) -> None:
    release = threading.Event()

    def held_loader() -> Segmenter:
        assert release.wait(DEADLINE_S), "the test never let the loader finish"
        return segmenter

    with running_app(Settings(), held_loader) as running:
        try:
            health = running.client.get("/healthz")
            assert (health.status_code, health.json()) == (200, {"status": "ok"})
            _assert_error(running.client.get("/readyz"), 503, "model_loading", "model is loading")
            refused = _post_image(running.client)
            _assert_error(refused, 503, "model_not_ready", "model is not ready")
            assert refused.headers["retry-after"] == "5"
            assert not running.loaded.is_set()  # all of that while the loader was still held
        finally:
            release.set()
        running.wait_ready()
        ready = running.client.get("/readyz")
        assert ready.status_code == 200, ready.text
        answer = ready.json()
        assert answer["status"] == "ready"
        assert answer["provider"] == segmenter.engines == "CPUExecutionProvider"
        assert answer["graphs"] == dict.fromkeys(
            ("preprocess", "encoder", "decoder", "procedure"), "CPUExecutionProvider"
        )
        manifest = segmenter.manifest
        assert answer["model"] == {
            "name": manifest.model_name,
            "version": "random-seed0",
            "sha256": manifest.model_sha256,
            "precision": "fp32",
            "random_weights": True,
        }
        assert len(answer["model"]["sha256"]) == 64
        assert answer["defaults"] == {"points": 30, "threshold": 0.2, "seed": 0}  # the model's, from its manifest
        assert "/" not in ready.text  # no path anywhere
        health = running.client.get("/healthz")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert running.failure_calls == []


@pytest.mark.parametrize(
    "error",
    [
        RuntimeError("cannot read /secret/models/encoder.onnx"),
        # No args: the loader thread once crashed on `exc.args[0]` here and never reported the failure.
        MemoryError(),
        SystemExit(1),  # not an Exception: whatever ends the load is reported
    ],
    ids=lambda error: type(error).__name__,
)
def test_a_failed_load_is_reported_and_stops_the_server(error: BaseException, caplog: pytest.LogCaptureFixture) -> None:
    stopped: list[str] = []

    def failing_loader() -> Segmenter:
        raise error

    with running_app(Settings(), failing_loader, on_load_failure=lambda: stopped.append("stop")) as running:
        running.wait_failed()
        # What a failure other than the loader's own says may name files: the log gets its kind only.
        logged = [record.getMessage() for record in caplog.records if record.name == "vreyesam.server"]
        assert f"model failed to load: {type(error).__name__}" in logged, logged
        assert "secret" not in caplog.text and "encoder" not in caplog.text
        assert stopped == ["stop"]
        assert running.edge.model.failed and running.edge.model.segmenter is None
        failed = running.client.get("/readyz")
        _assert_error(failed, 503, "model_failed", "model is not loaded")
        assert "secret" not in failed.text and "encoder" not in failed.text
        _assert_error(_post_image(running.client), 503, "model_not_ready", "model is not ready")
        health = running.client.get("/healthz")
        assert (health.status_code, health.json()) == (200, {"status": "ok"})
    assert running.failure_calls == [None]  # called once, not again at shutdown
    assert not running.loaded.is_set()


def test_a_refused_model_is_logged_with_its_reason(caplog: pytest.LogCaptureFixture) -> None:
    """The loader's own refusals (ModelLoadError) are written to be read by an operator: logged as they are."""

    reason = "model directory failed verification: encoder artifact does not match its sha256"

    def refusing_loader() -> Segmenter:
        raise ModelLoadError(reason)

    with running_app(Settings(), refusing_loader) as running:
        running.wait_failed()
    logged = [record.getMessage() for record in caplog.records if record.name == "vreyesam.server"]
    assert f"model failed to load: {reason}" in logged
