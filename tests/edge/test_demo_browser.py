"""The web demo end to end in a real headless Chromium (Debian's `chromium` + `chromedriver`).

The test starts `edge demo` (the `edge serve` app with the page) on the tiny bundle, then
drives the page like a person: pick an image, type a question, set a budget, press Ask,
and wait for the answer and the timings table, streamed from /v1/chat/completions. It also
asks about a file that is not an image and picks one that is too large, and checks the
page shows the server's (or the page's) message and keeps working. Screenshots
go to tests/artifacts/ (or $EDGE_TEST_ARTIFACTS); their paths are printed.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from runtime.bundle import read_manifest
from runtime.defaults import default_bundle_path
from tests.edge.conftest import DEMO_MAX_UPLOAD
from tests.edge.helpers import REPO

pytestmark = pytest.mark.browser

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("needs Debian's chromium and chromium-driver packages "
                "(apt-get install -y chromium chromium-driver)", allow_module_level=True)
pytest.importorskip("selenium", reason="needs the selenium package (pip install selenium)")

from selenium import webdriver  # noqa: E402
from selenium.webdriver.chrome.service import Service  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

ARTIFACTS = Path(os.environ.get("EDGE_TEST_ARTIFACTS", REPO / "tests" / "artifacts"))
# The closed network makes Chromium's background services fail; keep them all off.
CHROMIUM_FLAGS = (
    "--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
    "--disable-dev-shm-usage", "--disable-extensions", "--window-size=1280,1500",
)


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    os.environ.setdefault("SE_OFFLINE", "true")  # never let Selenium Manager look for downloads
    opts = webdriver.ChromeOptions()
    opts.binary_location = CHROMIUM
    for flag in CHROMIUM_FLAGS:
        opts.add_argument(flag)
    opts.add_argument(f"--user-data-dir={tmp_path_factory.mktemp('chromium-profile')}")
    opts.set_capability("goog:loggingPrefs", {"browser": "ALL"})
    driver = webdriver.Chrome(service=Service(CHROMEDRIVER), options=opts)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _wait(driver, predicate, timeout: float = 60, what: str = ""):
    return WebDriverWait(driver, timeout, poll_frequency=0.1).until(lambda d: predicate(d), what)


def _text(driver, element_id: str) -> str:
    return driver.find_element(By.ID, element_id).text


def _set(driver, element_id: str, value: str) -> None:
    el = driver.find_element(By.ID, element_id)
    el.clear()
    el.send_keys(value)


def _upload(driver, path: Path) -> None:
    driver.find_element(By.ID, "file-input").send_keys(str(path))


def _error_shown(driver) -> str:
    el = driver.find_element(By.ID, "error")
    return el.text if el.is_displayed() else ""


def _screenshot(driver, name: str) -> Path:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    path = ARTIFACTS / name
    driver.save_screenshot(str(path))
    print(f"screenshot: {path}")
    return path


def _timings(driver) -> dict[str, list[str]]:
    rows = driver.find_elements(By.CSS_SELECTOR, "#timings tbody tr")
    return {r.get_attribute("data-stage"): [td.text for td in r.find_elements(By.TAG_NAME, "td")]
            for r in rows}


def _js_errors(driver) -> list[str]:
    # 4xx answers to our own fetches are logged as "Failed to load resource": expected here
    return [e["message"] for e in driver.get_log("browser")
            if e["level"] == "SEVERE" and "Failed to load resource" not in e["message"]]


def test_upload_ask_and_watch_the_answer_stream_in(browser, demo_port, image_png, tmp_path):
    driver = browser
    driver.get(f"http://127.0.0.1:{demo_port}/")
    _wait(driver, lambda d: "profile demo-test" in _text(d, "device-info"), what="the info line")
    assert driver.find_element(By.ID, "thinking-budget").get_attribute("value") == "12"
    assert not driver.find_element(By.ID, "key-form").is_displayed()  # this server needs no key

    # the bundle's example is one click away
    driver.find_element(By.ID, "example-button").click()
    _wait(driver, lambda d: "example: 48×48" in _text(d, "image-status"), what="the example")
    assert driver.find_element(By.ID, "question").get_attribute("value") == "What colour is the square?"

    _upload(driver, image_png)
    _wait(driver, lambda d: "48×48" in _text(d, "image-status"), what="the upload")
    assert driver.find_element(By.ID, "preview").is_displayed()

    _set(driver, "question", "What colour is the square?")
    _set(driver, "thinking-budget", "6")
    driver.find_element(By.ID, "ask").click()
    _wait(driver, lambda d: "total" in _text(d, "summary"), what="the answer")

    assert _text(driver, "answer").strip()
    assert "done in" in _text(driver, "run-status")
    timings = _timings(driver)
    assert {"hint", "vision", "extraction", "thinking", "answer"} <= set(timings)
    for stage in ("extraction", "thinking", "answer"):
        tokens, seconds, rss = timings[stage][2], timings[stage][4], timings[stage][7]
        assert int(tokens) > 0 and float(seconds) >= 0 and float(rss) > 0, (stage, timings[stage])
    assert int(timings["thinking"][2]) <= 6 and timings["thinking"][3] == "6"
    summary = _text(driver, "summary")
    assert "peak RSS" in summary and "MB" in summary and "llamacpp" in summary
    for stage in ("stage-extraction", "stage-thinking", "stage-answer"):
        assert "done" in driver.find_element(By.ID, stage).get_attribute("class")
    shot = _screenshot(driver, "demo-answer.png")
    assert shot.stat().st_size > 10_000

    # not an image: the page cannot show it, and asking brings the server's message
    junk = tmp_path / "holiday.png"
    junk.write_text("this is a text file with a .png name")
    _upload(driver, junk)
    _wait(driver, lambda d: "cannot show it" in _text(d, "image-status"), what="the unreadable preview")
    driver.find_element(By.ID, "ask").click()
    _wait(driver, lambda d: "not a readable image" in _error_shown(d), what="the refusal")
    _screenshot(driver, "demo-not-an-image.png")

    # too large for this demo's limit
    big = tmp_path / "huge.jpg"
    big.write_bytes(b"\xff\xd8\xff" + os.urandom(DEMO_MAX_UPLOAD + 1000))
    _upload(driver, big)
    _wait(driver, lambda d: "the limit is" in _error_shown(d), what="the size refusal")

    # asking without a usable image says so
    driver.find_element(By.ID, "ask").click()
    _wait(driver, lambda d: "no image" in _error_shown(d), what="the missing-image message")

    # a good image again, thinking switched off: answered without a thinking stage
    _upload(driver, image_png)
    _wait(driver, lambda d: "48×48" in _text(d, "image-status") and not _error_shown(d))
    driver.find_element(By.ID, "thinking").click()
    assert not driver.find_element(By.ID, "thinking").is_selected()
    driver.find_element(By.ID, "ask").click()
    _wait(driver, lambda d: "total" in _text(d, "summary"), what="the second answer")
    assert "thinking" not in _timings(driver)
    assert _text(driver, "answer").strip()
    _screenshot(driver, "demo-no-thinking.png")
    assert _js_errors(driver) == []


def test_a_server_with_an_api_key_asks_for_it(browser, tmp_path):
    from tests.edge.serve_helpers import start_server

    srv = start_server(tmp_path / "server", "--threads", "1", "--profile", "laptop", "--api-key", "page-key",
                       command="demo")
    try:
        driver = browser
        driver.get(srv.url + "/")
        _wait(driver, lambda d: d.find_element(By.ID, "key-form").is_displayed(), what="the key form")
        assert "needs an API key" in _text(driver, "device-info")
        _set(driver, "api-key", "page-key")
        driver.find_element(By.CSS_SELECTOR, "#key-form button").click()
        _wait(driver, lambda d: "profile laptop" in _text(d, "device-info"), what="the info line")
        assert not driver.find_element(By.ID, "key-form").is_displayed()
        # the shipped bundle's first example, with its options (none for an open question),
        # answered through the key
        example = read_manifest(default_bundle_path()).examples[0]
        _wait(driver, lambda d: d.find_element(By.ID, "example-button").is_displayed(), what="the example button")
        driver.find_element(By.ID, "example-button").click()
        assert driver.find_element(By.ID, "options").get_attribute("value").strip() == example["options"].strip()
        driver.find_element(By.ID, "ask").click()
        _wait(driver, lambda d: "total" in _text(d, "summary"), what="the answer")
        answer = _text(driver, "answer").strip()
        assert answer in ("A", "B", "C", "D") if example["options"] else answer
        _screenshot(driver, "demo-with-key.png")
        assert _js_errors(driver) == []
    finally:
        assert srv.stop() == 0, srv.stderr()
