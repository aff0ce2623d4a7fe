"""The web app in a real headless Chromium (Debian's `chromium`, driven by Playwright): each flow saves a
screenshot (into $UNCLIP_TEST_SCREENSHOTS, else the test's temporary folder)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from .conftest import Server

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
pytestmark = [
    pytest.mark.slow,
    pytest.mark.browser,
    pytest.mark.skipif(CHROMIUM is None, reason="needs chromium (apt-get install chromium)"),
]


@pytest.fixture
def page(live: Server, tmp_path: Path) -> Iterator[Any]:
    sync_api = pytest.importorskip("playwright.sync_api")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        context.set_default_timeout(20_000)
        yield context.new_page()
        browser.close()


def shot(page: Any, name: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("UNCLIP_TEST_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


def sign_in(page: Any, live: Server, key: str) -> None:
    page.goto(live.url + "/")
    page.fill("#key", key)
    page.click("#signin-form button")
    page.wait_for_selector("#app:not([hidden])")


def test_the_image_viewer_shows_an_image_and_acts_on_it(page: Any, live: Server, tmp_path: Path) -> None:
    _, key = live.user("member")
    sign_in(page, live, key)
    page.fill("#gen-prompt", "a red apple")
    page.fill("#gen-n", "2")
    page.click("#gen-form button")
    page.wait_for_function("document.querySelectorAll('#results figure').length === 2")
    shot(page, "create", tmp_path)

    page.click("#results figure:first-child img")
    viewer = page.locator("#viewer")
    viewer.wait_for(state="visible")
    assert page.text_content("#viewer-prompt") == "a red apple"
    assert re.fullmatch(r"\d+", page.text_content("#viewer-seed") or "")
    assert "signed by this server" in (page.text_content("#viewer-provenance") or "")
    assert page.text_content("#viewer-settings") == "size 256x256 · n 2"
    assert page.get_attribute("#viewer-download", "href").endswith("/content")
    assert page.is_hidden("#viewer-upscale") is False and page.is_hidden("#viewer-vary") is False
    shot(page, "viewer", tmp_path)

    calls = len(live.engine.calls)
    page.click("#viewer-vary")
    viewer.wait_for(state="hidden")
    page.wait_for_function("document.querySelectorAll('#results figure').length === 2")
    page.wait_for_selector("#status", state="hidden")
    assert [c[0] for c in live.engine.calls[calls:]] == ["vary"]
    shot(page, "variations", tmp_path)

    page.click("#results figure:first-child img")
    viewer.wait_for(state="visible")
    page.click("#viewer-edit")
    page.wait_for_selector("#tab-edit:not([hidden])")
    assert page.input_value("#edit-prompt") == ""  # a variation has no prompt
    box = page.locator("#edit-canvas").bounding_box()
    page.mouse.move(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2)
    page.mouse.down()
    page.mouse.move(box["x"] + box["width"] / 2 + 20, box["y"] + box["height"] / 2 + 20)
    page.mouse.up()
    page.fill("#edit-prompt", "a hat")
    calls = len(live.engine.calls)
    page.click("#edit-form button:not([type=button])")
    page.wait_for_function("document.querySelectorAll('#results figure').length === 1")
    assert [c[0] for c in live.engine.calls[calls:]] == ["edit"]
    shot(page, "edit-from-viewer", tmp_path)

    page.click('nav button[data-tab="history"]')
    page.wait_for_function("document.querySelectorAll('#history figure').length === 5")
    page.click("#history figure:last-child img")
    viewer.wait_for(state="visible")
    assert page.text_content("#viewer-prompt") == "a red apple"
    page.keyboard.press("Escape")
    viewer.wait_for(state="hidden")
    assert not page.is_visible("#error")
