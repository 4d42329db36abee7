"""The page in a real browser: headless Chromium (Debian's chromium + chromium-driver) driven by Selenium, against
real `vreyesam serve` processes.

A visitor's flows, each checked against what the API itself answers: an uploaded eye image is segmented and
the page shows the API's mask (decoded from the page's own <img> through a canvas, pixel for pixel), its
outputs' exact PNG bytes behind the download links, and its statistics in the tiles; the sample loads with
one click; drop and paste work; keyboard alone gets from nothing to a result; a 413, a 415, a 401 and a 503
read as plain sentences; the page makes no request to another origin and logs no console error; with
VREYESAM_PAGE=0 it is not there. Screenshots (desktop and 360 px) go to build-out/.
"""

from __future__ import annotations

import base64
import json
import os
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import cv2
import httpx
import numpy as np
import pytest
from selenium import webdriver
from selenium.common.exceptions import TimeoutException
from selenium.webdriver.chrome.service import Service
from selenium.webdriver.common.action_chains import ActionChains
from selenium.webdriver.common.by import By
from selenium.webdriver.common.keys import Keys
from selenium.webdriver.support.ui import WebDriverWait

from tests.server_harness import ServerProcess, ready_server
from vreyesam.runtime.http import page
from vreyesam.runtime.media import render
from vreyesam.runtime.tools import synth

pytestmark = pytest.mark.browser

ROOT = Path(__file__).resolve().parents[3]
SCREENSHOTS = ROOT / "build-out"
CHROMIUM = Path(os.environ.get("VREYESAM_TEST_CHROMIUM", "/usr/bin/chromium"))
CHROMEDRIVER = Path(os.environ.get("VREYESAM_TEST_CHROMEDRIVER", "/usr/bin/chromedriver"))
# Headless, and none of Chromium's own traffic (updates, sync, safe browsing...): the network here is closed,
# and the test must see only the page's requests.
FLAGS = (
    "--headless=new",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-dev-shm-usage",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--disable-quic",
    "--no-first-run",
)
OUTPUTS = ("mask", "overlay", "probability", "uncertainty")
SENTENCES = {
    413: "This file is too large for the server. Choose a smaller image.",
    415: "This file is not an image the server can read. Use a JPEG, PNG, BMP, TIFF or WebP file.",
    401: "This server needs an API key: enter it under “API key” and try again.",
    503: "The server is busy. Try again in 1 s.",
}
API_KEY = "page-test-key-0123456789abcdef"


def _chromium(user_data: Path) -> webdriver.Chrome:
    if not (CHROMIUM.is_file() and CHROMEDRIVER.is_file()):
        pytest.fail("the browser tests need Debian's chromium and chromium-driver (make test installs them)")
    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in (*FLAGS, f"--user-data-dir={user_data}", "--window-size=1280,900"):
        options.add_argument(flag)
    options.set_capability("goog:loggingPrefs", {"browser": "ALL", "performance": "ALL"})
    driver = webdriver.Chrome(options=options, service=Service(str(CHROMEDRIVER)))
    driver.set_page_load_timeout(30)
    driver.set_script_timeout(30)
    return driver


@pytest.fixture(scope="module")
def chromium(tmp_path_factory: pytest.TempPathFactory) -> Iterator[webdriver.Chrome]:
    driver = _chromium(tmp_path_factory.mktemp("chromium"))
    try:
        yield driver
    finally:
        driver.quit()


@dataclass
class Visit:
    """One visit of the page in the browser: what a visitor does, and what the browser saw."""

    driver: webdriver.Chrome
    base_url: str

    def open(self) -> None:
        self.driver.set_window_size(1280, 900)
        self.drain_logs()  # from here on the logs are this visit's, the page's own loads included
        self.driver.get(self.base_url + "/")
        self.wait(lambda: self.text("model-line").startswith("Model "), "the model line")

    def wait(self, condition, what: str, timeout_s: float = 30.0) -> None:
        try:
            WebDriverWait(self.driver, timeout_s, poll_frequency=0.1).until(lambda _: condition())
        except TimeoutException:
            shown = f"message: {self.text('message')!r}, status: {self.text('status')!r}"
            raise AssertionError(f"waited {timeout_s:.0f} s for {what}; {shown}") from None

    def element(self, element_id: str):
        return self.driver.find_element(By.ID, element_id)

    def text(self, element_id: str) -> str:
        return self.element(element_id).text

    def shown(self, element_id: str) -> bool:
        return self.element(element_id).is_displayed()

    def choose_file(self, path: Path) -> None:
        self.element("file").send_keys(str(path))
        self.wait(lambda: self.text("preview-caption").startswith(path.name), "the preview")

    def set_field(self, name: str, value: object) -> None:
        field = self.element(name)
        field.clear()
        field.send_keys(str(value))

    def segment(self, timeout_s: float = 180.0) -> None:
        """Press Segment and wait for the answer: an error sentence (the alert) or the status line."""
        self.wait(lambda: self.element("segment").is_enabled(), "the Segment button")
        self.element("segment").click()
        self.wait(self._answered, "an answer", timeout_s)

    def _answered(self) -> bool:
        return (self.shown("message") or self.shown("status")) and not self.shown("progress")

    def error(self) -> str:
        """The error sentence shown (an alert), with no status line beside it."""
        assert self.element("message").get_attribute("role") == "alert"
        assert self.shown("message") and not self.shown("status"), (self.text("message"), self.text("status"))
        return self.text("message")

    def done(self) -> str:
        """The status line of a result shown, with no error beside it."""
        assert self.shown("status") and not self.shown("message"), (self.text("message"), self.text("status"))
        assert self.text("status").startswith("Done in "), self.text("status")
        return self.text("status")

    def download(self, link_id: str, folder: Path) -> bytes:
        """Click a download link as a visitor would; the bytes of the file the browser saved."""
        folder.mkdir(parents=True, exist_ok=True)
        self.driver.execute_cdp_cmd("Browser.setDownloadBehavior", {"behavior": "allow", "downloadPath": str(folder)})
        name = self.element(link_id).get_attribute("download")
        self.element(link_id).click()
        saved = folder / name
        self.wait(lambda: saved.is_file() and not list(folder.glob("*.crdownload")), f"the download {name}")
        return saved.read_bytes()

    def displayed_rgba(self, image_id: str) -> np.ndarray:
        """HxWx4 uint8: the <img> as the browser decoded it, read back through a canvas."""
        script = """
            const img = document.getElementById(arguments[0]);
            const canvas = document.createElement("canvas");
            canvas.width = img.naturalWidth; canvas.height = img.naturalHeight;
            const context = canvas.getContext("2d");
            context.drawImage(img, 0, 0);
            const data = context.getImageData(0, 0, canvas.width, canvas.height).data;
            let text = ""; for (let i = 0; i < data.length; i += 8192)
              text += String.fromCharCode.apply(null, data.subarray(i, i + 8192));
            return [canvas.width, canvas.height, btoa(text)];
        """
        width, height, data = self.driver.execute_script(script, image_id)
        return np.frombuffer(base64.b64decode(data), np.uint8).reshape(height, width, 4)

    def drain_logs(self) -> None:
        self.driver.get_log("browser")
        self.driver.get_log("performance")

    def console_errors(self) -> list[dict]:
        return [entry for entry in self.driver.get_log("browser") if entry["level"] == "SEVERE"]

    def requested_urls(self) -> list[str]:
        """Every URL the browser asked for since the last drain (Chrome's performance log)."""
        urls = []
        for entry in self.driver.get_log("performance"):
            message = json.loads(entry["message"])["message"]
            if message["method"] == "Network.requestWillBeSent":
                urls.append(message["params"]["request"]["url"])
        return urls

    def screenshot(self, path: Path, width: int) -> int:
        """The whole page laid out `width` CSS pixels wide, as PNG at `path`; returns its scroll width."""
        mobile = width < 600
        self.driver.execute_cdp_cmd(
            "Emulation.setDeviceMetricsOverride",
            {"width": width, "height": 900, "deviceScaleFactor": 1, "mobile": mobile},
        )
        try:
            self.driver.execute_script("window.scrollTo(0, 0)")
            content = self.driver.execute_cdp_cmd("Page.getLayoutMetrics", {})["cssContentSize"]
            clip = {"x": 0, "y": 0, "width": width, "height": content["height"], "scale": 1}
            shot = self.driver.execute_cdp_cmd(
                "Page.captureScreenshot", {"format": "png", "captureBeyondViewport": True, "clip": clip}
            )
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(base64.b64decode(shot["data"]))
            return int(self.driver.execute_script("return document.documentElement.scrollWidth"))
        finally:
            self.driver.execute_cdp_cmd("Emulation.clearDeviceMetricsOverride", {})


@pytest.fixture
def visit(chromium: webdriver.Chrome, served: ServerProcess) -> Visit:
    visit = Visit(chromium, served.base_url)
    visit.open()
    return visit


@pytest.fixture(scope="module")
def eye_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    _, image, _ = synth.generate(seed=21, n=1, width=320, height=240, mode="rgb")[0]
    path = tmp_path_factory.mktemp("upload") / "eye-21.png"
    path.write_bytes(render.encode_png(image))
    return path


def _api_answer(base_url: str, data: bytes, params: dict, headers: dict | None = None) -> httpx.Response:
    return httpx.post(
        base_url + "/predict",
        params={"outputs": ",".join(OUTPUTS), **params},
        content=data,
        headers={"content-type": "image/png", **(headers or {})},
        timeout=180,
    )


def _decoded(png: bytes) -> np.ndarray:
    return cv2.imdecode(np.frombuffer(png, np.uint8), cv2.IMREAD_UNCHANGED)


def _verdict_tile(quality: dict) -> tuple[str, str]:
    if quality["accepted"]:
        return "accepted", "accepted"
    return ",".join(quality["reasons"]), "rejected: " + ", ".join(quality["reasons"]).replace("_", " ")


def _measure_tile(value: float | None, text: Callable[[float], str]) -> tuple[float | None, str]:
    return value, "none fitted" if value is None else text(value)


def test_an_uploaded_eye_shows_the_apis_mask_tiles_and_files(
    visit: Visit, served: ServerProcess, eye_file: Path, tmp_path: Path
) -> None:
    ready = httpx.get(served.base_url + "/readyz").json()
    assert visit.text("model-line").startswith(f"Model {ready['model']['name']} {ready['model']['version']}")
    assert visit.shown("demo-banner")  # the test model has random weights
    assert visit.text("demo-banner").startswith("Demo: random weights, masks are meaningless.")
    assert [visit.text(f"default-{name}") for name in ("points", "threshold", "seed")] == ["30", "0.2", "0"]

    visit.choose_file(eye_file)
    visit.set_field("points", 8)
    visit.set_field("seed", 5)
    visit.segment()
    visit.done()
    assert visit.shown("results")

    answer = _api_answer(served.base_url, eye_file.read_bytes(), {"points": 8, "threshold": 0.2, "seed": 5})
    assert answer.status_code == 200, answer.text
    expected = answer.json()
    for kind in OUTPUTS:
        png = base64.b64decode(expected["outputs"][kind]["png_base64"])
        assert visit.element(f"download-{kind}").get_attribute("download") == f"eye-21-{kind}.png"
        assert visit.download(f"download-{kind}", tmp_path) == png, f"the {kind} download is not the API's PNG"
    mask = _decoded(base64.b64decode(expected["outputs"]["mask"]["png_base64"]))
    shown_mask = visit.displayed_rgba("out-mask")
    assert np.array_equal(shown_mask[..., 0], mask) and np.array_equal(shown_mask[..., 2], mask)
    overlay = _decoded(base64.b64decode(expected["outputs"]["overlay"]["png_base64"]))[..., ::-1]
    assert np.array_equal(visit.displayed_rgba("out-overlay")[..., :3], overlay)

    stats, size = expected["statistics"], expected["image"]
    tiles = {
        "tile-coverage": (stats["coverage_percent"], f"{stats['coverage_percent']:.2f} %"),
        "tile-area": (stats["area_px"], f"{stats['area_px']} px"),
        "tile-size": (
            f"{size['width']}x{size['height']}",
            f"{size['width']} \u00d7 {size['height']} px",
        ),  # a multiplication sign
        "tile-score-mean": (stats["score_mean"], f"{stats['score_mean']:.4f}"),
        "tile-score-max": (stats["score_max"], f"{stats['score_max']:.4f}"),
        "tile-verdict": _verdict_tile(expected["quality"]),
        "tile-openness": _measure_tile(expected["iris"]["occlusion90"], lambda v: f"{100 * v:.1f} %"),
        "tile-diameter": _measure_tile(expected["iris"]["diameter_px"], lambda v: f"{v:.1f} px"),
    }
    for tile, (value, text) in tiles.items():
        shown = "null" if value is None else str(value)  # as the page writes JavaScript's null
        assert visit.element(tile).get_attribute("data-value") == shown, tile
        assert visit.text(tile) == text, tile
    stages = [row.text.split()[0] for row in visit.driver.find_elements(By.CSS_SELECTOR, "#timings tr")]
    assert stages == list(expected["timings_ms"])
    assert visit.text("used").startswith("8 sampled prompts, threshold 0.2, seed 5")

    requested = visit.requested_urls()
    assert requested, "the performance log saw no request"
    assert all(url.startswith((served.base_url + "/", "blob:")) for url in requested), requested
    paths = {url.removeprefix(served.base_url).split("?")[0] for url in requested if not url.startswith("blob:")}
    assert paths <= {"/predict", "/readyz"} | page.ROUTES, paths
    resources = visit.driver.execute_script("return performance.getEntriesByType('resource').map((e) => e.name)")
    assert all(name.startswith((served.base_url + "/", "blob:")) for name in resources), resources
    assert visit.console_errors() == []

    assert visit.screenshot(SCREENSHOTS / "page-desktop.png", 1280) <= 1280
    assert visit.screenshot(SCREENSHOTS / "page-360.png", 360) <= 360  # readable on a phone: no sideways scroll


def test_the_sample_loads_with_one_click(visit: Visit) -> None:
    visit.element("sample").click()
    visit.wait(lambda: visit.text("preview-caption").startswith("sample-eye.png"), "the sample's preview")
    sample = _decoded(page.read_asset("sample-eye.png"))[..., ::-1]
    assert np.array_equal(visit.displayed_rgba("preview")[..., :3], sample)
    assert visit.element("segment").is_enabled()
    assert visit.console_errors() == []


def test_an_image_can_be_dropped_or_pasted(visit: Visit, eye_file: Path) -> None:
    encoded = base64.b64encode(eye_file.read_bytes()).decode()
    make_file = (
        "const bytes = Uint8Array.from(atob(arguments[0]), (c) => c.charCodeAt(0));"
        "const transfer = new DataTransfer();"
        "transfer.items.add(new File([bytes], arguments[1], {type: 'image/png'}));"
    )
    visit.driver.execute_script(
        make_file + "document.getElementById('drop-zone').dispatchEvent("
        "new DragEvent('drop', {dataTransfer: transfer, bubbles: true, cancelable: true}));",
        encoded,
        "dropped.png",
    )
    visit.wait(lambda: visit.text("preview-caption").startswith("dropped.png"), "the dropped image")
    visit.driver.execute_script(
        make_file + "document.dispatchEvent("
        "new ClipboardEvent('paste', {clipboardData: transfer, bubbles: true, cancelable: true}));",
        encoded,
        "pasted.png",
    )
    visit.wait(lambda: visit.text("preview-caption").startswith("pasted.png"), "the pasted image")
    assert np.array_equal(visit.displayed_rgba("preview")[..., :3], _decoded(eye_file.read_bytes())[..., ::-1])
    assert visit.console_errors() == []


def _focused_id(visit: Visit) -> str:
    return visit.driver.execute_script("return document.activeElement && document.activeElement.id") or ""


def _tab_to(visit: Visit, element_id: str, presses: int = 20) -> None:
    for _ in range(presses):
        ActionChains(visit.driver).send_keys(Keys.TAB).perform()
        if _focused_id(visit) == element_id:
            return
    raise AssertionError(f"Tab never reached #{element_id}")


def test_keyboard_alone_gets_a_result(visit: Visit) -> None:
    _tab_to(visit, "sample")
    ActionChains(visit.driver).send_keys(Keys.ENTER).perform()
    visit.wait(lambda: visit.text("preview-caption").startswith("sample-eye.png"), "the sample's preview")
    _tab_to(visit, "points")
    ActionChains(visit.driver).key_down(Keys.CONTROL).send_keys("a").key_up(Keys.CONTROL).send_keys("4").perform()
    _tab_to(visit, "segment")
    ActionChains(visit.driver).send_keys(Keys.ENTER).perform()
    visit.wait(lambda: visit.shown("results"), "the result", 180)
    assert visit.text("used").startswith("4 sampled prompts")
    assert _focused_id(visit) == "results-title"  # focus moves to the result, for screen readers too
    unnamed = visit.driver.execute_script(
        """return [...document.querySelectorAll("input, button, select, textarea, summary, a")]
             .filter((el) => !(el.labels && el.labels.length) && !el.getAttribute("aria-label")
                             && !el.textContent.trim())
             .map((el) => el.id || el.outerHTML);"""
    )
    assert unnamed == [], unnamed
    no_alt = visit.driver.execute_script(
        "return [...document.querySelectorAll('#results img')].filter((i) => !i.alt.trim()).map((i) => i.id)"
    )
    assert no_alt == [], no_alt


def test_a_file_too_large_and_one_not_an_image_read_as_sentences(visit: Visit, tmp_path: Path) -> None:
    big = tmp_path / "huge.png"
    big.write_bytes(b"\x89PNG\r\n\x1a\n" + os.urandom(2_500_000))  # over the test server's 2,000,000-byte cap
    visit.choose_file(big)
    visit.segment()
    assert visit.error() == SENTENCES[413]
    not_image = tmp_path / "animation.gif"
    not_image.write_bytes(b"GIF89a" + bytes(64))
    visit.choose_file(not_image)
    visit.segment()
    assert visit.error() == SENTENCES[415]
    errors = visit.console_errors()
    # Chrome reports each refused request itself (source "network"); the page adds no error of its own.
    assert [entry["source"] for entry in errors] == ["network", "network"], errors
    assert "413" in errors[0]["message"] and "415" in errors[1]["message"], errors


def test_a_key_and_a_busy_server_read_as_sentences(chromium: webdriver.Chrome, model_dir: Path, tmp_path: Path):
    keys = tmp_path / "api-keys"
    keys.write_text(API_KEY + "\n")
    settings = {"VREYESAM_API_KEYS_FILE": str(keys), "VREYESAM_MAX_QUEUE": "0"}  # one running, none waiting
    with ready_server(model_dir, tmp_path / "server.log", "--allow-random-weights", env=settings) as server:
        visit = Visit(chromium, server.base_url)
        visit.open()
        visit.element("sample").click()
        visit.segment()
        assert visit.error() == SENTENCES[401]
        assert visit.element("key-box").get_attribute("open") is not None and _focused_id(visit) == "api-key"
        visit.element("api-key").send_keys(API_KEY)
        visit.set_field("points", 4)

        # The only slot kept busy: the API's own requests one after another until the page has been turned
        # away. Each try presses Segment and waits for the page's answer: the busy sentence once a request of
        # the loop held the slot when the page's came (a try that got in first shows a result instead).
        _, large, _ = synth.generate(seed=3, n=1, width=1024, height=768, mode="nir")[0]
        image = render.encode_png(large)
        statuses: list[int] = []
        stop = threading.Event()

        def keep_busy() -> None:
            while not stop.is_set():
                answer = _api_answer(server.base_url, image, {"points": 16}, {"x-api-key": API_KEY})
                statuses.append(answer.status_code)

        def turned_away() -> bool:
            visit.segment()
            return visit.shown("message") and visit.text("message") == SENTENCES[503]

        busy = threading.Thread(target=keep_busy)
        busy.start()
        try:
            visit.wait(turned_away, "the page turned away while the server is busy", timeout_s=600)
        finally:
            stop.set()
            busy.join(timeout=300)
        assert visit.error() == SENTENCES[503]
        assert not busy.is_alive()
        assert 200 in statuses and set(statuses) <= {200, 503}, statuses  # the busy ones were answered

        visit.segment()
        visit.done()
        assert visit.text("used").startswith("4 sampled prompts")


def test_a_prediction_can_be_cancelled_and_a_bad_answer_is_not_called_unreachable(visit: Visit, tmp_path: Path) -> None:
    _, large, _ = synth.generate(seed=5, n=1, width=1024, height=768, mode="nir")[0]
    slow = tmp_path / "large-eye.png"
    slow.write_bytes(render.encode_png(large))
    visit.choose_file(slow)
    visit.set_field("points", 16)
    visit.wait(lambda: visit.element("segment").is_enabled(), "the Segment button")
    visit.element("segment").click()
    visit.wait(lambda: visit.shown("cancel"), "the Cancel button while the request is in flight")
    visit.element("cancel").click()
    visit.wait(visit._answered, "the cancelled request's end")
    assert visit.text("status") == "Cancelled." and not visit.shown("message")
    assert visit.element("status").get_attribute("role") == "status"  # announced politely, not as an alert
    assert not visit.shown("cancel") and visit.element("segment").is_enabled()

    # A 200 whose body this page cannot show (as a proxy rewriting answers might give): the fetch in the page
    # answers so for /predict only; the page must say the server answered, not that it is unreachable.
    visit.driver.execute_script(
        """const original = window.fetch;
        window.fetch = async (url, init) => String(url).startsWith("predict")
          ? new Response('{"outputs": {}}', {status: 200, headers: {"Content-Type": "application/json"}})
          : original(url, init);"""
    )
    visit.set_field("points", 1)
    visit.segment()
    assert (
        visit.error() == "The server answered, but this page could not show the result. Reload the page and try again."
    )


def test_no_page_when_it_is_turned_off(chromium: webdriver.Chrome, model_dir: Path, tmp_path: Path) -> None:
    log = tmp_path / "server.log"
    with ready_server(model_dir, log, "--allow-random-weights", env={"VREYESAM_PAGE": "0"}) as server:
        chromium.get(server.base_url + "/")
        body = chromium.find_element(By.TAG_NAME, "body").text
        assert json.loads(body) == {"error": {"code": "not_found", "message": "not found"}}
        assert chromium.find_elements(By.ID, "model-line") == []
        for route in sorted(page.ROUTES):
            assert httpx.get(server.base_url + route).status_code == 404, route
        assert httpx.get(server.base_url + "/readyz").status_code == 200  # the API itself is there
