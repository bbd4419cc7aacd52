"""The page at /: served without the API key, calls the JSON API; driven in a real headless
browser (Debian's chromium and chromedriver, through Selenium) against a real server."""

import shutil
from pathlib import Path

import httpx
import pytest
from fastapi.testclient import TestClient
from helpers import encode, make_photo, make_texture
from live_server import LiveServer
from pydantic import SecretStr

from app.config import Settings
from app.factory import create_app

API_KEY = "page-test-key-0123456789"
HANG = 120  # seconds: only to stop a hung run, never a limit on how fast something must be
CHROMIUM = shutil.which("chromium")
CHROMEDRIVER = shutil.which("chromedriver")
needs_chromium = pytest.mark.skipif(
    CHROMIUM is None or CHROMEDRIVER is None,
    reason="the browser test needs Debian's chromium and chromedriver: apt-get install chromium-driver",
)


def test_the_page_is_served_without_the_key_and_loads_nothing_from_elsewhere(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "data", api_key=SecretStr(API_KEY))
    with TestClient(create_app(settings)) as client:
        response = client.get("/")
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/html")
        assert 'id="file"' in response.text and "/duplicates" in response.text
        assert "http://" not in response.text and "https://" not in response.text  # no CDN
        assert client.get("/duplicates").status_code == 401  # the data behind it still needs the key
        assert client.get("/images/x/thumbnail").status_code == 401


@needs_chromium
def test_a_picture_dropped_on_the_page_shows_its_match_and_the_groups(tmp_path: Path) -> None:
    from selenium import webdriver
    from selenium.webdriver.chrome.service import Service
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.wait import WebDriverWait

    photo = make_photo(11, (800, 600))
    copy = tmp_path / "copy.png"
    copy.write_bytes(encode(photo.resize((400, 300)), "PNG"))
    with LiveServer(tmp_path / "data", api_key=API_KEY) as server:
        with httpx.Client(base_url=server.url, headers={"X-API-Key": API_KEY}, timeout=HANG) as http:
            for image_id in ("harbour", "harbour-copy"):
                stored = http.post(
                    "/images",
                    files={"file": ("p.jpg", encode(photo, "JPEG", quality=85))},
                    data={"id": image_id, "metadata": '{"place":"harbour"}'},
                )
                assert stored.status_code == 201, stored.text
        options = webdriver.ChromeOptions()
        options.binary_location = str(CHROMIUM)
        for argument in (
            "--headless=new",
            "--no-sandbox",
            "--disable-dev-shm-usage",
            "--window-size=1100,1300",
        ):
            options.add_argument(argument)
        browser = webdriver.Chrome(options=options, service=Service(executable_path=str(CHROMEDRIVER)))
        try:
            wait = WebDriverWait(browser, HANG)
            browser.get(server.url + "/")
            key = browser.find_element(By.ID, "key")
            key.send_keys(API_KEY)
            browser.find_element(By.ID, "file").send_keys(str(copy))
            wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, "tr.match img.thumb"))
            rows = [row.text for row in browser.find_elements(By.CSS_SELECTOR, "tr.match")]
            assert len(rows) == 2 and all("harbour" in row and "original" in row for row in rows), rows
            assert "2 matches" in browser.find_element(By.ID, "status").text
            assert len(browser.find_element(By.ID, "hash").text) == 16
            # a picture of one flat tone: the page says what a lack of matches is worth
            blank = tmp_path / "blank.png"
            blank.write_bytes(encode(make_texture(1), "PNG"))
            browser.find_element(By.ID, "file").clear()
            browser.find_element(By.ID, "file").send_keys(str(blank))
            wait.until(lambda b: "flat tone" in b.find_element(By.ID, "status").text)
            assert "0 matches" in browser.find_element(By.ID, "status").text
            browser.find_element(By.ID, "groups").click()
            wait.until(lambda b: b.find_elements(By.CSS_SELECTOR, ".group img.thumb"))
            group = browser.find_element(By.CSS_SELECTOR, ".group").text
            assert "2 images" in group and "harbour ~ harbour-copy: 0 bits (identical)" in group
            # stored through the page: it joins the group
            browser.find_element(By.ID, "store").click()
            browser.find_element(By.ID, "file").clear()
            browser.find_element(By.ID, "file").send_keys(str(copy))
            wait.until(lambda b: "stored as" in b.find_element(By.ID, "dims").text)
            browser.find_element(By.ID, "groups").click()
            wait.until(lambda b: "3 images" in b.find_element(By.CSS_SELECTOR, ".group").text)
            with httpx.Client(base_url=server.url, headers={"X-API-Key": API_KEY}, timeout=HANG) as http:
                assert len(http.get("/images").json()["items"]) == 3
            # a wrong key is said plainly on the page
            key.clear()
            key.send_keys("wrong-key-0123456789")
            browser.find_element(By.ID, "groups").click()
            wait.until(lambda b: "401" in b.find_element(By.ID, "groups-status").text)
            key.clear()
            key.send_keys(API_KEY)
            browser.find_element(By.ID, "groups").click()
            wait.until(lambda b: len(b.find_elements(By.CSS_SELECTOR, ".group img.thumb")) == 3)
            screenshot = tmp_path / "page.png"
            assert browser.save_screenshot(str(screenshot))
            print(f"screenshot of the page: {screenshot}")
            assert screenshot.stat().st_size > 10_000
        finally:
            browser.quit()
