"""The page itself, in Debian's headless Chromium driven by Playwright, as a person uses it."""

import io
import json
import re
import shutil
import time

import numpy as np
import pytest
from conftest import EXAMPLES, ROOT
from PIL import Image

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
def playwright():
    """One Playwright per module: a second one in the same process refuses to start."""
    if not shutil.which("chromium"):
        pytest.fail("Debian's chromium is not installed: make test (or apt-get install chromium) installs it")
    (ROOT / "artifacts").mkdir(exist_ok=True)
    with sync_api.sync_playwright() as p:
        yield p


@pytest.fixture(scope="module")
def page(live_app, playwright):
    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=FLAGS)
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


def _frames_arriving(page, seconds: float) -> list[str]:
    """The distinct aged frames (their URLs) the page shows over `seconds`."""
    shown: list[str] = []
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        src = page.evaluate("() => document.querySelector('#live-out img')?.src ?? null")
        if src and (not shown or shown[-1] != src):
            shown.append(src)
        time.sleep(0.02)
    return shown


def _picture(page, src: str) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(page.request.get(src).body())).convert("RGB")).astype(np.int16)


def test_live_webcam_ages_the_stream_and_follows_the_slider(live_app, playwright, tmp_path, detector):
    """Chromium's fake webcam plays a clip of a real example face; the Live tab streams it."""
    from conftest import rgb

    from faceaging.evaluation.live import CLIP_FACE, CLIP_SIZE, make_clip, write_y4m

    selfie = rgb(EXAMPLES / "luciano_codait_cc0.png")
    clip = make_clip(selfie, detector.detect(selfie)[0].box, 30, moving=False)
    camera = write_y4m(clip, tmp_path / "webcam.y4m")
    flags = [
        *FLAGS,
        "--use-fake-ui-for-media-stream",
        "--use-fake-device-for-media-stream",
        f"--use-file-for-fake-video-capture={camera}",
    ]
    (width, height), half = CLIP_SIZE, CLIP_FACE // 2
    face = slice(height // 2 - half, height // 2 + half), slice(width // 2 - half, width // 2 + half)

    def changed(picture: np.ndarray) -> float:
        """How far an aged frame is from the nearest webcam frame (mirrored or not) inside the face."""
        return min(np.abs(picture[face] - f[face]).mean() for c in clip[:5] for f in (c, c[:, ::-1]))

    browser = playwright.chromium.launch(executable_path=CHROMIUM, args=flags)
    try:
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.goto(live_app.url)
        page.get_by_role("tab", name="Live").click()
        page.get_by_text("Click to Access Webcam").click()
        page.locator("#live-webcam").get_by_role("button", name="capture photo").click()
        sync_api.expect(page.locator("#live-out img")).to_have_count(1, timeout=60_000)
        old = _frames_arriving(page, 6.0)
        assert len(old) >= 10, f"only {len(old)} aged frames arrived in 6 s"
        old_picture = _picture(page, old[-1])
        assert old_picture.shape == (height, width, 3)
        assert changed(old_picture) > 6  # at 60+ (the slider's start) the face is aged
        page.screenshot(path=str(ROOT / "artifacts" / "browser_live_60.png"))

        slider = page.locator("#live-age input[type=range]")
        slider.fill("0")
        slider.dispatch_event("change")
        time.sleep(1.0)  # frames already on their way were aged at 60+
        young = _frames_arriving(page, 3.0)
        assert young, "no frames arrived after the slider moved"
        young_picture = _picture(page, young[-1])
        assert np.abs(young_picture[face] - old_picture[face]).mean() > 6
        page.screenshot(path=str(ROOT / "artifacts" / "browser_live_0.png"))
        (ROOT / "artifacts" / "browser_live.json").write_text(json.dumps({"frames_per_second_seen": len(old) / 6.0}))
    finally:
        browser.close()
