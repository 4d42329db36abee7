"""API keys: read from a secret file, at least 16 characters, presented as Bearer or X-API-Key; through the
real app (in process), /predict needs one and the health routes do not."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.app_harness import RunningApp, canned_segmentation, loader_of, running_app
from vreyesam.runtime.http.edge import ApiKeyError, ApiKeys, presented_key
from vreyesam.runtime.model.segmenter import Segmenter
from vreyesam.runtime.settings import Settings

KEY = "k-0123456789abcdef"


def test_keys_from_a_file_with_comments_and_blank_lines(tmp_path: Path) -> None:
    path = tmp_path / "keys"
    path.write_text(f"# team a\n\n  {KEY}  \nsecond-key-0123456789\n")
    keys = ApiKeys.from_file(path)
    assert keys.allows(KEY) and keys.allows("second-key-0123456789")
    assert not keys.allows(KEY[:-1]) and not keys.allows(KEY + "x") and not keys.allows("")
    assert not keys.allows(None)


@pytest.mark.parametrize(
    ("content", "message"),
    [("# only a comment\n", "holds no key"), ("short-key\n", "at least 16 characters")],
)
def test_unusable_key_files(tmp_path: Path, content: str, message: str) -> None:
    path = tmp_path / "keys"
    path.write_text(content)
    with pytest.raises(ApiKeyError, match=message) as refused:
        ApiKeys.from_file(path)
    assert str(path) not in str(refused.value) and "short-key" not in str(refused.value)


def test_missing_key_file_names_no_path(tmp_path: Path) -> None:
    with pytest.raises(ApiKeyError, match="cannot be read") as refused:
        ApiKeys.from_file(tmp_path / "absent")
    assert str(tmp_path) not in str(refused.value)


@pytest.mark.parametrize(
    ("authorization", "x_api_key", "expected"),
    [
        (f"Bearer {KEY}", None, KEY),
        (f"bearer   {KEY} ", None, KEY),
        (None, f" {KEY} ", KEY),
        ("Bearer other-key-0123456789", KEY, KEY),  # X-API-Key wins when both are sent
        (f"Basic {KEY}", None, None),
        (KEY, None, None),
        (None, None, None),
    ],
)
def test_presented_key(authorization: str | None, x_api_key: str | None, expected: str | None) -> None:
    assert presented_key(authorization, x_api_key) == expected


# ------------------------------------------------------------------ through the real app, in process


@pytest.fixture(scope="module")
def keyed_app(segmenter: Segmenter, tmp_path_factory: pytest.TempPathFactory) -> Iterator[RunningApp]:
    """The app with API keys on, answering /predict with `canned_segmentation` (auth is before inference)."""
    keys = tmp_path_factory.mktemp("keys") / "api_keys"
    keys.write_text(f"# one key per line\n{KEY}\nanother-key-0123456789\n")
    settings = Settings(api_keys_file=keys)
    with running_app(settings, loader_of(segmenter), segment_function=canned_segmentation) as running:
        running.wait_ready()
        yield running


def _predict(running: RunningApp, headers: dict[str, str]) -> httpx.Response:
    return running.client.post("/predict", content=b"image bytes", headers={"content-type": "image/png", **headers})


@pytest.mark.parametrize(
    "headers",
    [
        {},
        {"authorization": "Bearer wrong-key-0123456789"},
        {"x-api-key": KEY[:-1]},
        {"x-api-key": KEY + "x"},
        {"authorization": KEY},  # no scheme
        {"authorization": f"Basic {KEY}"},
    ],
)
def test_predict_needs_a_valid_key(keyed_app: RunningApp, headers: dict[str, str]) -> None:
    response = _predict(keyed_app, headers)
    assert response.status_code == 401
    assert response.json() == {"error": {"code": "unauthorized", "message": "unauthorized"}}
    assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    "headers",
    [{"authorization": f"Bearer {KEY}"}, {"x-api-key": KEY}, {"x-api-key": "another-key-0123456789"}],
)
def test_a_valid_key_gets_the_answer(keyed_app: RunningApp, headers: dict[str, str]) -> None:
    response = _predict(keyed_app, headers)
    assert response.status_code == 200, response.text
    assert response.json()["image"] == {"width": 2, "height": 2}  # the per-image function's answer


def test_health_routes_are_open(keyed_app: RunningApp) -> None:
    health = keyed_app.client.get("/healthz")
    assert (health.status_code, health.json()) == (200, {"status": "ok"})
    ready = keyed_app.client.get("/readyz")
    assert (ready.status_code, ready.json()["status"]) == (200, "ready")
