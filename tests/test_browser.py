"""The page itself, in Debian's headless Chromium driven by Playwright, as a person uses it."""

import re
import shutil

import pytest
from conftest import EXAMPLES, ROOT

sync_api = pytest.importorskip("playwright.sync_api")
pytestmark = pytest.mark.slow

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


@pytest.fixture(scope="module")
def page(live_app):
    if not shutil.which("chromium"):
        pytest.fail("Debian's chromium is not installed: make test (or apt-get install chromium) installs it")
    (ROOT / "artifacts").mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
        page = browser.new_page(viewport={"width": 1280, "height": 1100})
        page.goto(live_app.url)
        yield page
        browser.close()


def test_upload_age_and_slide(page):
    page.locator("input[type=file]").first.set_input_files(str(EXAMPLES / "eileen_collins_nasa_portrait.png"))
    page.get_by_role("button", name="Age me").click()
    gallery_images = page.locator("#ages img")
    sync_api.expect(gallery_images).to_have_count(6, timeout=240_000)
    sync_api.expect(page.get_by_text("Estimated current age group")).to_be_visible()

    # The slider's image appears once the first render is done; moving the slider replaces it.
    at_age = page.locator("#at-age img")
    sync_api.expect(at_age).to_have_count(1, timeout=60_000)
    before = at_age.get_attribute("src")
    slider = page.locator("input[type=range]").first
    slider.fill("4.5")
    slider.dispatch_event("change")
    page.wait_for_function(
        "src => { const img = document.querySelector('#at-age img'); return img && img.src !== src; }",
        arg=before,
        timeout=60_000,
    )
    # The GIF follows the gallery in its own step and plays in place.
    sync_api.expect(page.locator("#gif img")).to_have_attribute("src", re.compile(r"aging\.gif$"), timeout=120_000)
    page.screenshot(path=str(ROOT / "artifacts" / "browser_aged.png"), full_page=True)


def test_clicking_an_example_shows_six_ages(page):
    page.reload()
    page.locator("img[src*='grace_hopper']").first.click()
    sync_api.expect(page.locator("#ages img")).to_have_count(6, timeout=300_000)
