"""The search page in a real headless Chromium (Debian's package, driven by Selenium through Debian's chromedriver).

Skips, saying why, where no system Chromium and chromedriver exist (`.ci/run` installs them). Neither Selenium
nor anything else downloads a browser: the driver is given the system binaries' paths.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from served_index import INDEX, running_service, service_config

from pipeline.service.live_index import LiveIndex

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
pytestmark = pytest.mark.skipif(
    not (CHROMIUM and CHROMEDRIVER),
    reason="no system Chromium and chromedriver: 'apt-get install chromium chromium-driver' (what .ci/run does)")


@pytest.fixture
def browser():
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service

    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for argument in ("--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage", "--mute-audio",
                     "--autoplay-policy=no-user-gesture-required", "--window-size=1280,900"):
        options.add_argument(argument)
    driver = webdriver.Chrome(service=Service(executable_path=CHROMEDRIVER), options=options)
    driver.set_page_load_timeout(60)
    yield driver
    driver.quit()


def test_page_searches_shows_thumbnails_and_plays_the_clip_at_its_time_range(served_store, browser, tmp_path):
    from selenium.webdriver.common.by import By
    from selenium.webdriver.common.keys import Keys
    from selenium.webdriver.support.ui import WebDriverWait

    live = LiveIndex(served_store.layout, INDEX, poll_seconds=0)
    with running_service(service_config(served_store), live) as url:
        browser.get(url + "/")
        wait = WebDriverWait(browser, 60)
        wait.until(lambda d: "v1" in d.find_element(By.ID, "index-info").text)
        box = browser.find_element(By.ID, "query")
        box.send_keys("a red square slides left", Keys.ENTER)
        wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#results .hit")) == 3)
        wait.until(lambda d: d.execute_script(
            "return [...document.querySelectorAll('#results img.thumb')].every(i => i.complete)"))
        loaded = browser.execute_script(
            "return [...document.querySelectorAll('#results img.thumb')].map(i => i.naturalWidth)")
        assert len(loaded) == 3 and all(width > 0 for width in loaded), "every result shows its thumbnail"
        assert not browser.find_elements(By.CSS_SELECTOR, "#results .thumb.missing")
        status = browser.find_element(By.ID, "status").text
        assert "3 results" in status and "v1" in status
        results_shot = tmp_path / "search-results.png"
        browser.save_screenshot(str(results_shot))
        if os.environ.get("REELHASH_SCREENSHOT"):  # to refresh the README's picture by hand
            shutil.copy(results_shot, Path(os.environ["REELHASH_SCREENSHOT"]))

        hits = browser.find_elements(By.CSS_SELECTOR, "#results .hit")
        # A clip that does not start at 0 s shows that the player seeks; take the latest-starting one.
        hit = max(hits, key=lambda element: float(element.get_attribute("data-start")))
        start, end = float(hit.get_attribute("data-start")), float(hit.get_attribute("data-end"))
        hit.click()
        wait.until(lambda d: d.execute_script("const v = document.getElementById('video');"
                                              "return v.readyState >= 2 && v.currentTime > 0 || v.error !== null"))
        state = browser.execute_script(
            "const v = document.getElementById('video');"
            "return {error: v.error && v.error.code, time: v.currentTime, src: v.currentSrc, paused: v.paused};")
        assert state["error"] is None, f"the browser could not play the clip: {state}"
        assert start - 0.05 <= state["time"] <= end + 0.5, state
        assert f"#t={start:g}" in state["src"] or f"#t={start}" in state["src"]
        shot = tmp_path / "search-player.png"
        browser.save_screenshot(str(shot))
        assert shot.stat().st_size > 10_000 and results_shot.stat().st_size > 10_000
