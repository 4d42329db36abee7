"""The page's routes and headers over HTTP (a real server), its files, and the API-only deployment (page off).

What the page does in a browser is tests/runtime/http/test_page_browser.py; here: which routes exist, what
they answer and with which headers, that the page's files reach no other host and call no route but
/readyz and /predict, and that the sample eye is the synthetic generator's picture.
"""

from __future__ import annotations

import re

import cv2
import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient

from tests.server_harness import ServerProcess
from vreyesam.runtime.http import page
from vreyesam.runtime.http.app import create_app
from vreyesam.runtime.settings import Settings
from vreyesam.runtime.tools import synth

# The sample eye: `vreyesam synth --out DIR -n 1 --seed 1 --mode nir` (400x300) -> DIR/images/eye_0000.png
SAMPLE = {"seed": 1, "n": 1, "width": 400, "height": 300, "mode": "nir"}
API_ROUTES = {"/healthz", "/readyz", "/predict"}


def _never_loads():
    raise RuntimeError("not needed: these tests do not predict")


def _routes(app) -> set[str]:
    return {route.path for route in app.routes}


def test_the_routes_are_the_api_and_the_page_only() -> None:
    assert _routes(create_app(Settings(), _never_loads)) == API_ROUTES | page.ROUTES
    assert {"/", "/page.js", "/page.css", "/sample-eye.png"} == page.ROUTES


def test_an_api_only_deployment_has_no_page() -> None:
    app = create_app(Settings(page=False), _never_loads)
    assert _routes(app) == API_ROUTES
    with TestClient(app) as client:
        for route in sorted(page.ROUTES):
            answer = client.get(route)
            assert answer.status_code == 404, route
            assert answer.json() == {"error": {"code": "not_found", "message": "not found"}}


@pytest.mark.parametrize("asset", page.ASSETS, ids=lambda asset: asset.route)
def test_every_page_answer_carries_the_security_headers(served: ServerProcess, asset: page.Asset) -> None:
    answer = httpx.get(served.base_url + asset.route)
    assert answer.status_code == 200
    assert answer.headers["content-type"] == asset.media_type
    assert answer.content == page.read_asset(asset.file)
    policy = answer.headers["content-security-policy"]
    assert policy == page.CONTENT_SECURITY_POLICY
    directives = dict(item.split(" ", 1) for item in policy.split("; "))
    assert directives["default-src"] == "'self'"
    assert directives["script-src"] == "'self'" and directives["style-src"] == "'self'"  # nothing inline
    assert directives["connect-src"] == "'self'"
    assert directives["frame-ancestors"] == "'self' https://huggingface.co"
    assert answer.headers["x-content-type-options"] == "nosniff"
    assert answer.headers["referrer-policy"] == "no-referrer"
    assert "server" not in answer.headers


def test_an_unchanged_file_is_not_sent_again(served: ServerProcess) -> None:
    first = httpx.get(served.base_url + "/page.js")
    again = httpx.get(served.base_url + "/page.js", headers={"if-none-match": first.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    assert again.headers["content-security-policy"] == page.CONTENT_SECURITY_POLICY
    stale = httpx.get(served.base_url + "/page.js", headers={"if-none-match": '"something-else"'})
    assert stale.status_code == 200 and stale.content == first.content


@pytest.mark.parametrize(
    "path",
    ["/index.html", "/page/page.js", "/page/", "/page.js/../manifest.json", "/%2e%2e/manifest.json", "/sample-eye"],
)
def test_no_other_file_is_served(served: ServerProcess, path: str) -> None:
    answer = httpx.get(served.base_url + path)
    assert answer.status_code == 404
    assert answer.json()["error"]["code"] == "not_found"


def test_the_page_asks_for_nothing_but_its_files_and_the_api() -> None:
    html = page.read_asset("index.html").decode()
    script = page.read_asset("page.js").decode()
    style = page.read_asset("page.css").decode()
    for text in (html, script, style):
        assert not re.search(r"(https?:)?//[a-z0-9]", text, re.IGNORECASE), "a reference to another host"
        assert "@import" not in text and "url(" not in text
    # Relative to the page (it also works under a path prefix): `/` + each is a route of this server.
    referenced = {"/" + name for name in re.findall(r'(?:src|href)="([^"]+)"', html)}
    assert referenced <= page.ROUTES, referenced
    fetched = set(re.findall(r"fetch\(\s*[`\"']([^`\"'?$]+)", script))
    assert fetched == {"readyz", "predict", "sample-eye.png"}, fetched
    assert "<script>" not in html and " style=" not in html and "<style" not in html  # nothing inline
    assert not re.search(r"\son[a-z]+=", html), "an inline event handler"
    assert "localStorage" not in script and "sessionStorage" not in script and "cookie" not in script
    assert "innerHTML" not in script and "insertAdjacentHTML" not in script  # answers become text, never markup


def test_the_sample_eye_is_the_generators_picture() -> None:
    stored = cv2.imdecode(np.frombuffer(page.read_asset("sample-eye.png"), np.uint8), cv2.IMREAD_COLOR)
    _, image, _ = synth.generate(**SAMPLE)[0]
    assert np.array_equal(stored[..., ::-1], image)


def test_readiness_names_the_defaults_the_page_shows(served: ServerProcess) -> None:
    ready = httpx.get(served.base_url + "/readyz").json()
    assert ready["defaults"] == {"points": 30, "threshold": 0.2, "seed": 0}
