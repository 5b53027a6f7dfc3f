"""The report in a real browser: Debian's headless Chromium (which `make test` installs when it is missing) opens
report.html from disk with the network unused, and every embedded image must decode, with no console errors."""

from __future__ import annotations

import shutil

import pytest
from PIL import Image

# As the machine's notes say Chromium runs here: as root without the sandbox, and without the background
# connections (updates, sync) that a closed network refuses, many at a time.
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-background-networking",
         "--disable-component-update", "--disable-sync"]  # fmt: skip
# Each image decoded and drawn on a canvas: its size, and whether its last row has any opaque pixel (every plot and
# thumbnail is opaque; a truncated or corrupt file leaves the part it could not decode transparent).
DECODE_ALL = """
Promise.all(Array.from(document.images).map(async (image) => {
  try { await image.decode(); } catch (error) { return [image.alt, 0, false]; }
  const canvas = document.createElement("canvas");
  canvas.width = image.naturalWidth;
  canvas.height = image.naturalHeight;
  const context = canvas.getContext("2d");
  context.drawImage(image, 0, 0);
  const row = context.getImageData(0, canvas.height - 1, canvas.width, 1).data;
  return [image.alt, image.naturalWidth, row.some((value, i) => i % 4 === 3 && value > 0)];
}))
"""


@pytest.mark.slow
def test_the_report_renders_in_headless_chromium(colours_run, tmp_path):
    from playwright.sync_api import sync_playwright

    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is missing: `make test` installs it (apt-get install chromium)"
    problems, requests = [], []
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=chromium, args=FLAGS, headless=True)
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.on("console", lambda message: problems.append(message.text) if message.type == "error" else None)
        page.on("pageerror", lambda error: problems.append(str(error)))
        page.on("request", lambda request: requests.append(request.url))
        page.goto(colours_run.report.as_uri(), wait_until="load")
        images = page.evaluate(DECODE_ALL)
        title = page.title()
        page.screenshot(path=tmp_path / "report.png", full_page=True)
        browser.close()
    assert problems == []
    assert [url for url in requests if not url.startswith(("file:", "data:"))] == []  # nothing fetched: offline
    assert len(images) >= 8 and all(width > 0 and whole for _, width, whole in images), images
    assert title == "kagglekit report: colours"
    with Image.open(tmp_path / "report.png") as shot:
        assert shot.width == 1280 and shot.height > 3000  # the whole page, every section laid out
