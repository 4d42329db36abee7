"""Schemathesis against the app's own OpenAPI document: the real app factory with the real model, in-process.

The app is built by `create_app` (docs enabled, so /openapi.json exists) with the real loader; schemathesis'
ASGI client starts its lifespan, which loads the model in the background, and the fixture waits for
/readyz. Requests are generated from the document by schemathesis (`APIOperation.as_strategy`) and run by
Hypothesis: valid and schema-violating query parameters (positive and negative modes), and for /predict
also arbitrary bodies under assorted content types, since the document cannot describe the image body.

Why not `@schema.parametrize()`: with a fixture-provided schema (`schemathesis.pytest.from_fixture`, needed
so that collecting this file does not load a model) schemathesis 4.32 reads `request.node._nodeid`, which
pytest 9 no longer has. Strategies from the same schema, run by Hypothesis directly, avoid that path.

Checks, and why these:
- `not_a_server_error`, on every request: no 5xx, ever. The model is ready and requests are sequential, so
  not even a 503 (overload, model not ready) is legitimate here. Never disabled.
- `response_schema_conformance`: where the document declares a schema for the status that came back
  (200 on all three routes; FastAPI's generated 422 on /predict), the body must conform to it.
- `content_type_conformance`: where the document declares a response for that status, the media type must
  be the declared one.
Not run: `status_code_conformance` and the other checks about undocumented answers. The JSON error answers
(400, 406, 413, 415, 422 `{"error": ...}`) are the API's contract (tests/runtime/http/test_server.py,
tests/reliability/test_bad_inputs.py) but FastAPI does not list them in the generated document, since
/predict reads the raw body; flagging each 415 to a body-less generated request as "undocumented status"
would restate that omission on every example. `positive_data_acceptance` is not run for the same reason:
the document cannot describe a valid image, so a "positive" request without one is rightly refused (415).
"""

from __future__ import annotations

import gc
import threading
import time
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest

schemathesis = pytest.importorskip("schemathesis")  # a test-only tool: `pip install schemathesis`

from hypothesis import HealthCheck, given, settings  # noqa: E402 (schemathesis depends on hypothesis)
from hypothesis import strategies as st  # noqa: E402
from schemathesis.checks import not_a_server_error  # noqa: E402
from schemathesis.generation.modes import GenerationMode  # noqa: E402
from schemathesis.python import asgi  # noqa: E402
from schemathesis.specs.openapi.checks import content_type_conformance, response_schema_conformance  # noqa: E402

from vreyesam.runtime.http.app import create_app  # noqa: E402
from vreyesam.runtime.model.loader import LoadOptions, load_segmenter  # noqa: E402
from vreyesam.runtime.model.segmenter import Segmenter  # noqa: E402
from vreyesam.runtime.settings import Settings  # noqa: E402

MAX_EXAMPLES = 30
CHECKS = [not_a_server_error, response_schema_conformance, content_type_conformance]
FUZZ_SETTINGS = settings(
    max_examples=MAX_EXAMPLES,
    deadline=timedelta(seconds=30),  # per example; every generated request is refused before inference
    derandomize=True,  # the same examples on every run: a failure reproduces
    database=None,  # no .hypothesis directory in the checkout
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.data_too_large],
)
OPERATIONS = {("GET", "/healthz"), ("GET", "/readyz"), ("POST", "/predict")}


@pytest.fixture(scope="module")
def api_schema(model_dir: Path) -> Iterator[schemathesis.schemas.BaseSchema]:
    # Schemathesis' pytest plugin ends every ASGI lifespan after each test, and the next request starts it
    # again; each start runs the app's loader in a new thread. The real model is loaded once, and later
    # starts get that same segmenter back at once (otherwise a reload would still be running at exit).
    loaded: list[Segmenter] = []
    lock = threading.Lock()

    def load_once() -> Segmenter:
        with lock:
            if not loaded:
                loaded.append(load_segmenter(model_dir, LoadOptions(device="cpu", allow_random_weights=True)))
            return loaded[0]

    app = create_app(
        Settings(model_dir=model_dir, enable_docs=True, allow_random_weights=True, max_body_bytes=2_000_000),
        load_once,
    )
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)  # starts the app's lifespan: the model loads
    with asgi.get_client(app) as client:
        deadline = time.monotonic() + 180
        while client.get("/readyz").status_code != 200:
            assert not app.state.edge.model.failed, "the model failed to load"
            assert time.monotonic() < deadline, "the model never became ready"
            time.sleep(0.25)
    yield schema
    asgi.shutdown_lifespans()
    # Free the onnxruntime sessions now, on this thread, not during interpreter shutdown (where their
    # thread pools abort the process: "terminate called without an active exception", exit 134).
    app.state.edge.model.segmenter = None
    loaded.clear()
    gc.collect()


def test_document_lists_the_three_routes(api_schema: schemathesis.schemas.BaseSchema) -> None:
    found = {(op.ok().method.upper(), op.ok().path) for op in api_schema.get_all_operations()}
    assert found == OPERATIONS  # a new route must be added to the fuzzing below


@pytest.mark.parametrize(
    ("method", "path", "mode"),
    [
        ("GET", "/healthz", GenerationMode.POSITIVE),
        ("GET", "/readyz", GenerationMode.POSITIVE),
        ("POST", "/predict", GenerationMode.POSITIVE),
        # Negative: out-of-range and mistyped parameters, unknown extra parameters. /healthz and /readyz
        # take no parameters, so there is nothing to negate there.
        ("POST", "/predict", GenerationMode.NEGATIVE),
    ],
    ids=lambda value: str(value),
)
def test_generated_requests(
    api_schema: schemathesis.schemas.BaseSchema, method: str, path: str, mode: GenerationMode
) -> None:
    operation = api_schema[path][method]

    @FUZZ_SETTINGS
    @given(case=operation.as_strategy(generation_mode=mode))
    def run(case: schemathesis.Case) -> None:
        case.call_and_validate(checks=CHECKS)

    run()


# Bodies: arbitrary bytes, and bytes behind each allowed format's magic (so they reach the header parsers).
MAGIC = [b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n", b"II*\x00", b"MM\x00*", b"RIFF\x00\x00\x00\x00WEBP", b"BM"]
BODIES = st.one_of(st.binary(max_size=2048), st.builds(lambda m, b: m + b, st.sampled_from(MAGIC), st.binary()))
CONTENT_TYPES = st.sampled_from(
    [
        "image/png",
        "image/jpeg",
        "application/octet-stream",
        "multipart/form-data; boundary=fuzz",
        "multipart/form-data",
        "text/plain",
        "application/json",
        "image/svg+xml",
        "IMAGE/PNG; charset=binary",
    ]
)


def test_predict_with_arbitrary_bodies(api_schema: schemathesis.schemas.BaseSchema) -> None:
    operation = api_schema["/predict"]["POST"]

    @FUZZ_SETTINGS
    @given(case=operation.as_strategy(generation_mode=GenerationMode.POSITIVE), body=BODIES, ctype=CONTENT_TYPES)
    def run(case: schemathesis.Case, body: bytes, ctype: str) -> None:
        case.call_and_validate(checks=CHECKS, headers={"Content-Type": ctype}, data=body)

    run()
