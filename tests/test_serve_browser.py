"""End to end in a real headless Chromium: `pipeline/serve.py` started as a user starts it, the
page opened, a collection image clicked, a result clicked, words searched, a map point clicked;
each time the grid must show what the API (and so faiss) answers. The screenshot is kept as an
artefact: in $SERVE_ARTIFACTS when set, else in the test's temporary folder (path printed)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

from conftest import REPO_ROOT
from serve_factory import make_collection

CHROMIUM, CHROMEDRIVER = Path("/usr/bin/chromium"), Path("/usr/bin/chromedriver")
FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--window-size=1400,1100"]
K = 5


def _need_browser() -> None:
    missing = [str(p) for p in (CHROMIUM, CHROMEDRIVER) if not p.exists()]
    if not missing:
        return
    message = (f"{' and '.join(missing)} not installed (apt-get install -y chromium "
               "chromium-driver; .ci/run installs them)")
    if os.environ.get("CI") == "true":
        pytest.fail(f"CI must run the browser test: {message}")
    pytest.skip(message)


@pytest.fixture
def server(tmp_path, fake_model):
    _need_browser()
    collection = make_collection(tmp_path / "data", fake_model)
    log = tmp_path / "serve.log"
    command = [sys.executable, str(REPO_ROOT / "pipeline" / "serve.py"), "--port", "0", "--k", str(K),
               *[arg for index in collection.indexes for arg in ("--index", str(index))],
               "--head", str(collection.head), "--text-model", str(fake_model),
               "--cache", str(tmp_path / "cache")]
    with open(log, "w") as out:
        process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, cwd=tmp_path)
    try:
        yield _wait_for_url(process, log)
    finally:
        process.terminate()
        process.wait(timeout=30)


def _wait_for_url(process: subprocess.Popen, log: Path) -> str:
    deadline = time.time() + 120
    while time.time() < deadline:
        for line in log.read_text().splitlines():
            if "serving on " in line:
                return line.split("serving on ")[1].split()[0]
        if process.poll() is not None:
            raise AssertionError(f"pipeline/serve.py exited: {log.read_text()[-2000:]}")
        time.sleep(0.2)
    raise AssertionError(f"pipeline/serve.py did not start: {log.read_text()[-2000:]}")


@pytest.fixture
def browser(tmp_path):
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = str(CHROMIUM)
    for flag in FLAGS + [f"--user-data-dir={tmp_path / 'chromium-profile'}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(service=Service(str(CHROMEDRIVER)), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def _api(url: str, path: str) -> dict:
    with urllib.request.urlopen(url.rstrip("/") + path, timeout=30) as response:
        return json.loads(response.read())


def _grid(driver, model: str) -> list[str]:
    # read in one script, so a grid the page replaces mid-read never yields a stale element
    return driver.execute_script(
        "return [...document.querySelectorAll(`#results section[data-model='${arguments[0]}'] figure`)]"
        ".map((f) => f.dataset.id);", model)


def _wait(driver, condition, what: str, seconds: float = 30):
    from selenium.common.exceptions import StaleElementReferenceException
    from selenium.webdriver.support.ui import WebDriverWait
    try:   # the page re-renders while it is polled: a stale element means "not yet", so poll on
        return WebDriverWait(driver, seconds, ignored_exceptions=(StaleElementReferenceException,)
                             ).until(lambda d: condition(d))
    except Exception as exc:   # a timeout: say what was awaited and what the page shows
        raise AssertionError(f"{what}; page says: {d_text(driver)}") from exc


def d_text(driver) -> str:
    return driver.find_element("css selector", "main").text[:800]


def _expected(url: str, query: str) -> dict[str, list[str]]:
    answer = _api(url, query)
    return {model: [r["id"] for r in result["results"]] for model, result in answer["models"].items()
            if "results" in result}


def _shows(driver, expected: dict[str, list[str]]) -> bool:
    return all(_grid(driver, model) == ids for model, ids in expected.items())


def test_the_page_queries_follows_results_and_maps(server, browser, tmp_path):
    browser.get(server)
    _wait(browser, lambda d: d.find_elements("css selector", '#collection figure[data-id="g1/img2.jpg"]'),
          "the collection strip")
    _wait(browser, lambda d: len(d.find_elements("css selector", "#map circle")) == 16, "the map")

    # click a collection image: both models' neighbours, as the API answers them
    browser.find_element("css selector", '#collection figure[data-id="g1/img2.jpg"]').click()
    first = _expected(server, f"/api/query?id={urllib.parse.quote('g1/img2.jpg')}&k={K}")
    assert set(first) == {"colour_hist", "vgg_moments"} and all(len(v) == K for v in first.values())
    _wait(browser, lambda d: _shows(d, first), f"the grids of g1/img2.jpg: {first}")
    assert first["colour_hist"][0] == "g1/img2.jpg"
    assert browser.find_element("css selector", "#query figure").get_attribute("data-id") == "g1/img2.jpg"

    # click the palette model's third result: the page queries by it
    clicked = first["colour_hist"][2]
    browser.find_element("css selector",
                         f'#results section[data-model="colour_hist"] figure[data-id="{clicked}"]').click()
    second = _expected(server, f"/api/query?id={urllib.parse.quote(clicked)}&k={K}")
    _wait(browser, lambda d: _shows(d, second), f"the grids of {clicked}: {second}")
    assert second["colour_hist"][0] == clicked and second != first
    # every thumbnail loads (but the symlink's, which is refused)
    loaded = ("const imgs = [...document.querySelectorAll(\"#results figure:not([data-id='g0/link.jpg']) img\")];"
              "return imgs.length > 0 && imgs.every((i) => i.complete && i.naturalWidth > 0);")
    _wait(browser, lambda d: d.execute_script(loaded), "the thumbnails to load")

    # words through the palette model's head; the other model says it has none
    browser.find_element("id", "words").send_keys("pixel art")
    browser.find_element("css selector", "#words-form button").click()
    words = _expected(server, "/api/words?q=pixel%20art&k=5")
    _wait(browser, lambda d: _shows(d, words), f"the words' grid: {words}")
    assert "no tagging head" in browser.find_element(
        "css selector", '#results section[data-model="vgg_moments"]').text

    # a point of the map queries its image
    browser.find_element("css selector", '#map circle[data-id="g0/img3.jpg"]').click()
    third = _expected(server, f"/api/query?id={urllib.parse.quote('g0/img3.jpg')}&k={K}")
    _wait(browser, lambda d: _shows(d, third), "the grids of the map's point")

    folder = Path(os.environ.get("SERVE_ARTIFACTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    shot = folder / "serve_page.png"
    assert browser.save_screenshot(str(shot)) and shot.stat().st_size > 10_000
    print(f"screenshot: {shot}")
    if shutil.which("file"):
        assert "PNG image" in subprocess.run(["file", str(shot)], capture_output=True, text=True).stdout
