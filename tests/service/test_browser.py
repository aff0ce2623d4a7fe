"""The web app in a real headless Chromium (Debian's `chromium`, driven by Playwright): each flow saves a
screenshot (into $UNCLIP_TEST_SCREENSHOTS, else the test's temporary folder)."""

from __future__ import annotations

import os
import re
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Server, png

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
        # the tests read the page with Playwright's string predicates, which the app's content security
        # policy forbids (no eval); test_the_app_runs_under_its_content_security_policy keeps the policy
        context = browser.new_context(viewport={"width": 1280, "height": 800}, bypass_csp=True)
        context.set_default_timeout(20_000)
        yield context.new_page()
        browser.close()


def shot(page: Any, name: str, tmp_path: Path) -> None:
    folder = Path(os.environ.get("UNCLIP_TEST_SCREENSHOTS") or tmp_path)
    folder.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(folder / f"{name}.png"), full_page=True)


@contextmanager
def job(page: Any, n: int) -> Iterator[None]:
    """Around the action that starts a job: wait until that job has ended (not an earlier one, whose results
    may still be on the page) and check it showed `n` images and no error."""
    page.evaluate("document.getElementById('results').append(Object.assign(document.createElement('i'), "
                  "{id: 'before-job', hidden: true}))")  # fmt: skip
    yield
    page.wait_for_function("!document.getElementById('before-job') "  # cleared when the job starts
                           "&& document.getElementById('results').getAttribute('aria-busy') === 'false'")  # fmt: skip
    assert page.is_hidden("#error"), page.text_content("#error")
    assert page.locator("#results figure").count() == n


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
    with job(page, 2):
        page.click("#gen-form button:not([type=button])")
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
    with job(page, 2):
        page.click("#viewer-vary")
    assert page.is_hidden("#viewer") and page.is_hidden("#status")
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
    with job(page, 1):
        page.click("#edit-form button:not([type=button])")
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


def test_create_with_seed_steps_guidance_and_a_negative_prompt(page: Any, live: Server, tmp_path: Path) -> None:
    _, key = live.user("member")
    sign_in(page, live, key)
    page.fill("#gen-prompt", "a rocket")
    page.click("#gen-advanced summary")
    page.fill("#gen-seed", "123")
    page.fill("#gen-steps", "3")
    page.fill("#gen-guidance", "4.5")
    page.fill("#gen-negative", "blurry")
    shot(page, "create-advanced", tmp_path)
    with job(page, 1):
        page.click("#gen-form button:not([type=button])")
    kind, args = live.engine.calls[-1]
    assert kind == "generate" and args["seed"] == 123 and args["steps"] == 3
    assert args["guidance"] == 4.5 and args["negative_prompt"] == "blurry"
    page.click("#results figure img")
    page.locator("#viewer").wait_for(state="visible")
    assert page.text_content("#viewer-seed") == "123"
    assert "negative_prompt blurry" in (page.text_content("#viewer-settings") or "")


TRANSPARENT = "(() => { const c = document.getElementById('edit-canvas'); const d = c.getContext('2d')" \
    ".getImageData(0, 0, c.width, c.height).data; let n = 0; for (let i = 3; i < d.length; i += 4) n += d[i] === 0;" \
    " return n; })()"  # fmt: skip


def stroke(page: Any, dx: float = 0) -> None:
    box = page.locator("#edit-canvas").bounding_box()
    x, y = box["x"] + box["width"] / 2 + dx, box["y"] + box["height"] / 2
    page.mouse.move(x, y)
    page.mouse.down()
    page.mouse.move(x + 30, y + 10)
    page.mouse.up()


def test_the_mask_brush_eraser_undo_and_redo(page: Any, live: Server, tmp_path: Path) -> None:
    from .conftest import png

    _, key = live.user("trusted")  # may edit uploaded images
    sign_in(page, live, key)
    page.click('nav button[data-tab="edit"]')
    page.set_input_files("#edit-file", {"name": "in.png", "mimeType": "image/png", "buffer": png(256, "RGB")})
    page.wait_for_function("document.getElementById('edit-canvas').width === 256")
    assert page.evaluate(TRANSPARENT) == 0 and page.is_disabled("#undo")
    stroke(page)
    painted = page.evaluate(TRANSPARENT)
    assert painted > 500
    page.click("#undo")
    assert page.evaluate(TRANSPARENT) == 0 and page.is_enabled("#redo")
    page.click("#redo")
    assert page.evaluate(TRANSPARENT) == painted
    page.check("#tool-eraser")
    stroke(page, dx=20)
    assert 0 < page.evaluate(TRANSPARENT) < painted  # the eraser took part of the mask back
    page.keyboard.press("Control+z")
    assert page.evaluate(TRANSPARENT) == painted
    shot(page, "mask", tmp_path)
    page.fill("#edit-prompt", "a hat")
    page.fill("#edit-n", "2")
    with job(page, 2):
        page.click("#edit-form button:not([type=button])")
    assert live.engine.calls[-1][0] == "edit" and live.engine.calls[-1][1]["mask"] is True
    assert live.engine.calls[-1][1]["n"] == 2
    # pick a candidate and go on editing it: a fresh canvas, nothing painted, the brush chosen again
    page.click("#results figure:nth-child(2) >> text=Edit this one")
    page.wait_for_function(f"{TRANSPARENT} === 0")
    assert page.is_disabled("#undo") and page.is_checked("#tool-brush")
    calls = len(live.engine.calls)
    page.check("#tool-eraser")
    stroke(page)  # erasing nothing: still nothing to edit, said before anything is sent
    page.click("#edit-form button:not([type=button])")
    page.wait_for_selector("#error:not([hidden])")
    assert "Paint over the area to change" in (page.text_content("#error") or "")
    assert len(live.engine.calls) == calls
    page.check("#tool-brush")
    stroke(page)
    with job(page, 2):
        page.click("#edit-form button:not([type=button])")
    assert live.engine.calls[-1][0] == "edit" and live.engine.calls[-1][1]["mask"] is True


def test_upscale_screen_and_cancel_during_upscaling(page: Any, live: Server, tmp_path: Path) -> None:
    from .conftest import png

    _, key = live.user("member")
    sign_in(page, live, key)
    page.click('nav button[data-tab="upscale"]')
    page.set_input_files("#upscale-file", {"name": "s.png", "mimeType": "image/png", "buffer": png(64, "RGB")})
    with job(page, 1):
        page.click("#upscale-form button")
    assert live.engine.calls[-1][0] == "upscale"
    shot(page, "upscale", tmp_path)

    live.engine.delay = 0.5  # 4 steps of half a second: cancel lands in the middle
    page.click("#upscale-form button")
    page.wait_for_selector("#status:not([hidden])")
    page.wait_for_function("document.getElementById('status-text').textContent.startsWith('running')")
    page.click("#cancel")
    page.wait_for_selector("#error:not([hidden])", timeout=5_000)
    assert page.text_content("#error") == "Cancelled: its credits were refunded."
    assert page.is_hidden("#status")
    shot(page, "upscale-cancelled", tmp_path)


def test_an_admin_approves_the_waitlist_and_manages_users(page: Any, live: Server, tmp_path: Path) -> None:
    import httpx

    from unclip.service.db import User

    _, admin = live.user("admin")
    waiting, _ = live.user("waitlisted", email="wait@example.test")
    member, member_key = live.user("member", email="member@example.test")
    r = httpx.post(live.url + "/v1/images/generations", json={"prompt": "something forbidden"},
                   headers={"Authorization": f"Bearer {member_key}"})  # fmt: skip
    assert r.status_code == 400  # refused: the audit log has it

    def user(user_id: str) -> User:
        with live.sv.db.session() as s:
            return s.get(User, user_id)

    sign_in(page, live, admin)
    page.click('nav button[data-tab="admin"]')
    row = page.locator('#waitlist tr[data-email="wait@example.test"]')
    row.wait_for()
    refusal = page.locator('#reviews tr[data-type="refusal"]')
    assert "violence" in refusal.text_content() and "member@example.test" in refusal.text_content()
    shot(page, "admin", tmp_path)
    row.get_by_role("button", name="Approve as member").click()
    row.wait_for(state="detached")
    assert user(waiting).role == "member"

    from unclip.service import credits

    with live.sv.db.session() as s:  # the month's grant first: what an admin adds comes on top of it
        credits.ensure_grant(s, s.get(User, member), live.sv.settings.credit_grants)
    before = user(member).credits
    member_row = page.locator('#users tr[data-email="member@example.test"]')
    member_row.get_by_label("credits to add for member@example.test").fill("50")
    member_row.get_by_role("button", name="Add").click()
    page.wait_for_function("document.querySelector('#users tr[data-email=\"member@example.test\"]')"
                           f".textContent.includes('{before + 50}')")  # fmt: skip
    assert user(member).credits == before + 50
    role = member_row.get_by_label("role of member@example.test")
    page.once("dialog", lambda d: d.dismiss())  # a change of role is asked first: no, and nothing changes
    role.select_option("admin")
    page.wait_for_function("document.querySelector('#users tr[data-email=\"member@example.test\"] select')"
                           ".value === 'member'")  # fmt: skip
    assert user(member).role == "member"
    page.once("dialog", lambda d: d.accept())
    role.select_option("trusted")
    page.wait_for_function("document.querySelector('#users tr[data-email=\"member@example.test\"] select')"
                           ".value === 'trusted'")  # fmt: skip
    page.once("dialog", lambda d: d.accept())
    member_row.get_by_role("button", name="Suspend").click()
    page.locator('#users tr[data-email="member@example.test"] >> text=Reactivate').wait_for()
    assert user(member).role == "trusted" and user(member).status == "suspended"
    changes = page.locator('#admin-actions tr[data-action="user.status"]')
    changes.wait_for()  # each change is in the admins' log, with who made it
    assert "admin-" in changes.text_content() and "member@example.test" in changes.text_content()
    assert page.locator("#admin-actions tbody tr").count() == 4  # approved, credits, role, suspension
    assert not page.is_visible("#error")


def test_phone_width(live: Server, tmp_path: Path) -> None:
    """At 390 px the app fits the screen: no sideways scrolling on the create screen or in the viewer."""
    sync_api = pytest.importorskip("playwright.sync_api")
    _, key = live.user("member")
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, bypass_csp=True).new_page()
        page.set_default_timeout(20_000)
        sign_in(page, live, key)
        page.fill("#gen-prompt", "a red apple")
        with job(page, 1):
            page.click("#gen-form button:not([type=button])")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        shot(page, "phone-create", tmp_path)
        page.click("#results figure img")
        page.locator("#viewer").wait_for(state="visible")
        assert page.evaluate("document.documentElement.scrollWidth <= window.innerWidth")
        shot(page, "phone-viewer", tmp_path)
        browser.close()


def test_blend_a_prompt_with_an_image_from_the_viewer(page: Any, live: Server, tmp_path: Path) -> None:
    _, key = live.user("member")
    sign_in(page, live, key)
    page.fill("#gen-prompt", "a cat")
    with job(page, 1):
        page.click("#gen-form button:not([type=button])")
    page.click("#results figure img")
    page.locator("#viewer").wait_for(state="visible")
    page.click("#viewer-blend")
    page.wait_for_selector("#tab-blend:not([hidden])")
    assert page.locator("#blend-items .blend-item").count() == 2
    assert page.locator("#blend-items .blend-item[data-image-id]").count() == 1
    page.fill("#blend-items .blend-item:not([data-image-id]) input[type=text]", "a dog")
    page.locator("#blend-items .blend-item[data-image-id] input[type=range]").fill("0.8")
    shot(page, "blend", tmp_path)
    with job(page, 2):
        page.click("#blend-form button:not([type=button])")
    assert live.engine.calls[-1] == ("blend", {"items": 2})
    page.click('nav button[data-tab="blend"]')
    for _ in range(2):
        page.click("#blend-add")
    assert page.is_disabled("#blend-add")  # 4 at most


def test_a_refusal_is_shown_plainly_and_costs_nothing(page: Any, live: Server, tmp_path: Path) -> None:
    from unclip.service.db import User

    uid, key = live.user("member")
    sign_in(page, live, key)
    credits = page.text_content("#who")
    page.fill("#gen-prompt", "something forbidden")
    page.click("#gen-form button:not([type=button])")
    page.wait_for_selector("#error:not([hidden])")
    assert "safety system" in (page.text_content("#error") or "")
    assert page.locator("#results figure").count() == 0 and page.text_content("#who") == credits
    shot(page, "refusal", tmp_path)
    with live.sv.db.session() as s:
        assert s.get(User, uid).credits == int((credits or "").split(" · ")[-1].split()[0])
    page.fill("#gen-prompt", "a red apple")  # the next action clears it
    with job(page, 1):
        page.click("#gen-form button:not([type=button])")
    assert page.is_hidden("#error")


def test_surprise_me_offers_the_models_measured_prompts(tmp_path: Path) -> None:
    import json

    from .conftest import make_settings, start_server

    folder = tmp_path / "models" / "unclip-test"
    for part in ("prior", "decoder"):
        (folder / part).mkdir(parents=True)
    prompts = ["a red apple in the style of Noto emoji", "a rocket, Twemoji style"]
    (folder / "examples.json").write_text(json.dumps({"examples": [{"prompt": p} for p in prompts]}))
    live = start_server(make_settings(tmp_path / "data", models_dir=str(tmp_path / "models")))
    sync_api = pytest.importorskip("playwright.sync_api")
    try:
        _, key = live.user("member")
        import httpx

        models = httpx.get(live.url + "/v1/models", headers={"Authorization": f"Bearer {key}"}).json()["data"]
        assert {m["id"]: m["examples"] for m in models}["unclip-test"] == prompts
        with sync_api.sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
            page = browser.new_page()
            page.set_default_timeout(20_000)
            sign_in(page, live, key)
            page.wait_for_selector("#surprise:not([hidden])")
            page.click("#surprise")
            first = page.input_value("#gen-prompt")
            page.click("#surprise")
            assert {first, page.input_value("#gen-prompt")} == set(prompts)  # another one each time
            browser.close()
    finally:
        live.stop()


def test_the_outpainting_canvas(page: Any, live: Server, tmp_path: Path) -> None:
    from PIL import Image

    from .conftest import png

    _, member = live.user("member")
    sign_in(page, live, member)
    assert page.is_hidden('nav button[data-tab="outpaint"]')  # members may not upload images to edit
    page.click("#signout")
    page.wait_for_selector("#signin:not([hidden])")
    _, key = live.user("trusted")
    sign_in(page, live, key)
    page.click('nav button[data-tab="outpaint"]')
    page.set_input_files("#out-file", {"name": "start.png", "mimeType": "image/png", "buffer": png(256, "RGB")})
    page.wait_for_function("document.getElementById('out-note').textContent.startsWith('256×256')")
    assert page.evaluate("[out.frame.x, out.frame.y]") == [1408 + 128, 1408]  # half over the right edge

    page.fill("#out-prompt", "more sky")
    page.fill("#out-n", "2")
    calls = len(live.engine.calls)
    page.click("#out-form button:not([type=button])")
    page.wait_for_function("document.querySelectorAll('#out-candidates button').length === 2")
    kind, args = live.engine.calls[calls]
    assert kind == "edit" and args["n"] == 2 and args["size"] == 256 and args["prompt"] == "more sky"
    assert page.locator("#results figure").count() == 0  # candidates stay on the canvas
    page.click("#out-candidates button:nth-child(2)")
    assert page.get_attribute("#out-candidates button:nth-child(2)", "aria-selected") == "true"
    shot(page, "outpaint-candidates", tmp_path)
    page.click("#out-keep")
    assert page.locator("#out-candidates button").count() == 0 and page.is_enabled("#out-undo")

    # on with the keyboard: two Shift+Right steps put the frame half over the new part
    page.focus("#out-canvas")
    page.keyboard.press("Shift+ArrowRight")
    page.keyboard.press("Shift+ArrowRight")
    page.fill("#out-n", "1")
    page.click("#out-form button:not([type=button])")
    page.wait_for_function("document.querySelectorAll('#out-candidates button').length === 1")
    page.click("#out-keep")

    # pan by dragging outside the frame, zoom with the buttons
    before = page.evaluate("[out.ox, out.scale]")
    box = page.locator("#out-canvas").bounding_box()
    page.mouse.move(box["x"] + 20, box["y"] + 20)
    page.mouse.down()
    page.mouse.move(box["x"] + 80, box["y"] + 50)
    page.mouse.up()
    page.click("#out-zoom-in")
    after = page.evaluate("[out.ox, out.scale]")
    assert after[0] != before[0] and after[1] > before[1]
    page.click("#out-fit")
    shot(page, "outpaint-canvas", tmp_path)

    with page.expect_download() as download:
        page.click("#out-export")
    saved = tmp_path / "canvas.png"
    download.value.save_as(saved)
    assert Image.open(saved).size == (256 + 128 + 128, 256)
    page.click("#out-undo")  # the second frame is taken back
    with page.expect_download() as download:
        page.click("#out-export")
    download.value.save_as(saved)
    assert Image.open(saved).size == (256 + 128, 256)

    # a frame that touches nothing is refused in words, and nothing is sent
    page.focus("#out-canvas")
    for _ in range(8):
        page.keyboard.press("Shift+ArrowDown")
    calls = len(live.engine.calls)
    page.click("#out-form button:not([type=button])")
    page.wait_for_selector("#error:not([hidden])")
    assert "does not touch the picture" in (page.text_content("#error") or "")
    assert len(live.engine.calls) == calls


def test_a_report_and_a_refusal_through_the_review_queue(page: Any, live: Server, tmp_path: Path) -> None:
    import httpx

    _, admin = live.user("admin")
    member, key = live.user("member", email="reporter@example.test")
    r = httpx.post(live.url + "/v1/images/generations", json={"prompt": "something forbidden"},
                   headers={"Authorization": f"Bearer {key}"})  # fmt: skip
    assert r.status_code == 400
    sign_in(page, live, key)
    page.fill("#gen-prompt", "a green pear")
    with job(page, 1):
        page.click("#gen-form button:not([type=button])")
    page.click("#results figure img")
    page.locator("#viewer").wait_for(state="visible")
    page.click("#viewer-report summary")
    page.fill("#viewer-report-reason", "it shows something it should not")
    page.click("#viewer-report-send")
    page.wait_for_function("document.getElementById('viewer-note').textContent.startsWith('Reported')")
    page.keyboard.press("Escape")
    page.click("#signout")
    page.wait_for_selector("#signin:not([hidden])")

    sign_in(page, live, admin)
    page.click('nav button[data-tab="admin"]')
    report = page.locator('#reviews tr[data-type="report"]')
    report.wait_for()
    assert "a green pear" in report.text_content() and "should not" in report.text_content()
    page.wait_for_function("document.querySelector('#reviews tr[data-type=report] img').naturalWidth > 0")
    shot(page, "review-queue", tmp_path)
    page.once("dialog", lambda d: d.accept())  # confirming a report withholds the image: asked first
    report.get_by_role("button", name="Confirm").click()
    report.wait_for(state="detached")  # decided: off the pending list
    refusal = page.locator('#reviews tr[data-type="refusal"]')
    refusal.get_by_role("button", name="Overturn").click()
    refusal.wait_for(state="detached")
    page.locator("#reviews-empty").wait_for()
    page.select_option("#review-filter", "")
    page.locator('#reviews tr[data-type="report"] >> text=confirmed').wait_for()
    page.locator('#reviews tr[data-type="refusal"] >> text=overturned').wait_for()
    assert live.sv.images.recent_offences(member) == 0
    history = httpx.get(live.url + "/v1/images", headers={"Authorization": f"Bearer {key}"}).json()["data"]
    assert history == []  # the confirmed report withheld the image
    assert not page.is_visible("#error")


def tab_to(page: Any, selector: str, back: bool = False, limit: int = 60) -> None:
    """Press Tab (Shift+Tab) until the focused element matches `selector`."""
    for _ in range(limit):
        if page.evaluate("(s) => !!document.activeElement && document.activeElement.matches(s)", selector):
            return
        page.keyboard.press("Shift+Tab" if back else "Tab")
    raise AssertionError(f"{selector} cannot be reached with the keyboard")


def test_the_keyboard_alone_signs_in_creates_views_and_changes_tabs(
    page: Any, live: Server, tmp_path: Path
) -> None:
    _, key = live.user("member")
    page.goto(live.url + "/")
    tab_to(page, "#key")
    page.keyboard.type(key)
    page.keyboard.press("Enter")
    page.wait_for_selector("#app:not([hidden])")

    tab_to(page, "#gen-prompt")
    page.keyboard.type("a red apple")
    with job(page, 1):
        page.keyboard.press("Control+Enter")  # submits from the prompt box
    assert page.is_hidden("#status")
    assert [c[0] for c in live.engine.calls] == ["generate"]

    tab_to(page, "#results figure a")
    page.keyboard.press("Enter")
    page.locator("#viewer").wait_for(state="visible")
    assert page.text_content("#viewer-prompt") == "a red apple"
    assert page.evaluate("document.querySelector('#viewer').contains(document.activeElement)")
    tab_to(page, "#viewer-download")
    shot(page, "keyboard-viewer", tmp_path)
    page.keyboard.press("Escape")
    page.locator("#viewer").wait_for(state="hidden")

    tab_to(page, 'nav button[data-tab="history"]', back=True)
    page.keyboard.press("Enter")
    page.wait_for_function("document.querySelectorAll('#history figure').length === 1")
    tab_to(page, "#history figure a")
    page.keyboard.press("Enter")
    page.locator("#viewer").wait_for(state="visible")
    page.keyboard.press("Escape")
    tab_to(page, 'nav button[data-tab="generate"]', back=True)
    page.keyboard.press(" ")
    page.wait_for_selector("#tab-generate:not([hidden])")
    assert not page.is_visible("#error")


def test_the_app_runs_under_its_content_security_policy(live: Server, tmp_path: Path) -> None:
    """Sign in, create, view, the history and the admin screens with the policy enforced (no Playwright
    predicates here: they need eval), and no violation reported."""
    sync_api = pytest.importorskip("playwright.sync_api")
    _, key = live.user("admin")
    violations: list[str] = []
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=["--no-sandbox"])
        page = browser.new_context(viewport={"width": 1280, "height": 800}).new_page()
        page.set_default_timeout(20_000)
        page.on("console", lambda m: violations.append(m.text) if "Content Security Policy" in m.text else None)
        sign_in(page, live, key)
        page.fill("#gen-prompt", "a red apple")
        page.click("#gen-form button:not([type=button])")
        page.locator("#results figure img").first.wait_for()
        page.click("#results figure img")
        page.locator("#viewer").wait_for(state="visible")
        page.locator("#viewer-provenance", has_text="signed by this server").wait_for()
        page.keyboard.press("Escape")
        for tab in ("history", "admin"):
            page.click(f'nav button[data-tab="{tab}"]')
        page.locator("#users tr").first.wait_for()
        shot(page, "under-csp", tmp_path)
        browser.close()
    assert violations == []


def test_a_double_click_neither_loses_the_sign_up_key_nor_repeats_history(page: Any, live: Server) -> None:
    """The second click of a double-clicked "Join the waitlist" answered 409 email_taken and its message replaced
    the key shown only once; a double-clicked "More" appended the same page of history twice."""
    import httpx

    page.goto(live.url + "/")
    page.fill("#email", "double@example.test")
    page.dblclick("#signup-form button")
    page.wait_for_function("document.getElementById('new-key')?.value.startsWith('sk-unclip-')")
    page.wait_for_timeout(500)
    assert page.input_value("#new-key").startswith("sk-unclip-")

    _, key = live.user("trusted")
    for _ in range(3):
        r = httpx.post(live.url + "/v1/images/generations", json={"prompt": "a pear", "n": 10, "size": "256x256"},
                       headers={"Authorization": f"Bearer {key}"}, timeout=60)  # fmt: skip
        assert r.status_code == 200, r.text
    sign_in(page, live, key)
    page.click('nav button[data-tab="history"]')
    page.wait_for_function("document.querySelectorAll('#history figure').length === 24")
    page.dblclick("#more")
    page.wait_for_function("document.querySelectorAll('#history figure').length >= 30")
    page.wait_for_timeout(500)
    assert page.locator("#history figure").count() == 30


def test_the_viewer_of_an_outpaint_offers_only_what_takes_its_shape(page: Any, live: Server) -> None:
    _, key = live.user("trusted")
    r = httpx.post(
        live.url + "/v1/images/outpaints",
        headers={"Authorization": f"Bearer {key}"},
        files={"image": ("a.png", png(64), "image/png")},
        data={"prompt": "more sky", "right": "64"},
    )
    assert r.status_code == 200, r.text
    sign_in(page, live, key)
    page.click('nav button[data-tab="history"]')
    page.wait_for_function("document.querySelectorAll('#history figure').length === 1")
    page.click("#history figure img")
    page.locator("#viewer").wait_for(state="visible")
    assert page.is_disabled("#viewer-vary") and page.is_disabled("#viewer-edit") and page.is_disabled("#viewer-blend")
    assert page.is_enabled("#viewer-upscale") and page.is_enabled("#viewer-outpaint")
    assert "take square images" in (page.text_content("#viewer-note") or "")


def test_a_failed_sign_in_keeps_the_new_accounts_key_on_the_page(page: Any, live: Server) -> None:
    """The sign-in error was written where the new key was shown, once: a mistyped key (a double click on the
    shown text selected only the part after its last hyphen) lost it, and the email was taken."""
    page.goto(live.url + "/")
    page.fill("#email", "newcomer@example.test")
    page.click("#signup-form button")
    page.wait_for_function("document.getElementById('new-key')?.value.startsWith('sk-unclip-')")
    key = page.input_value("#new-key")
    page.click("#new-key")  # one click selects the whole key
    assert page.evaluate("(() => { const f = document.getElementById('new-key');"
                         " return f.value.substring(f.selectionStart, f.selectionEnd); })()") == key  # fmt: skip
    page.fill("#key", key.rsplit("-", 1)[1])
    page.click("#signin-form button")
    page.wait_for_selector("#signin-error:not([hidden])")
    assert "Sign-in failed" in page.text_content("#signin-error") and page.input_value("#new-key") == key


def test_a_page_signed_in_again_elsewhere_still_works_and_signs_out(page: Any, live: Server) -> None:
    """Signing out and in again in another tab starts a new session: this page kept the old CSRF token, every
    action failed until a reload, and "Sign out" (403) reloaded a page that was still signed in."""
    _, key = live.user("member")
    sign_in(page, live, key)
    other = page.context.new_page()
    other.goto(live.url + "/")
    other.wait_for_selector("#app:not([hidden])")
    other.click("#signout")
    other.wait_for_selector("#signin:not([hidden])")
    sign_in(other, live, key)
    other.close()
    with job(page, 1):
        page.fill("#gen-prompt", "a red apple")
        page.click("#gen-form button:not([type=button])")
    with page.expect_navigation():
        page.click("#signout")
    page.wait_for_selector("#signin:not([hidden])")
    assert page.evaluate("fetch('/v1/session', {credentials: 'same-origin'}).then((r) => r.status)") == 401


def test_the_next_person_to_sign_in_on_a_page_sees_nothing_of_the_last(page: Any, live: Server) -> None:
    """An admin's session ended (signed out elsewhere, expired, key revoked) with the admin tab open; a member
    then signed in on that page and saw the admin's table of users and the last one's email in the header."""
    _, admin = live.user("admin")
    live.user("member", email="someone.private@example.test")
    _, member = live.user("member")
    sign_in(page, live, admin)
    page.click('nav button[data-tab="admin"]')
    page.wait_for_selector('#users tr[data-email="someone.private@example.test"]')
    other = page.context.new_page()
    other.goto(live.url + "/")
    other.wait_for_selector("#app:not([hidden])")
    other.click("#signout")
    other.wait_for_selector("#signin:not([hidden])")
    other.close()
    with page.expect_navigation():  # the next request answers 401: the page starts afresh
        page.fill("#user-filter", "s")
    page.wait_for_selector("#signin:not([hidden])")
    assert page.text_content("#who") == ""
    page.fill("#key", member)
    page.click("#signin-form button")
    page.wait_for_function("document.getElementById('who').textContent.includes('· member ·')")
    assert not page.is_visible("#tab-admin") and "someone.private@example.test" not in page.inner_text("body")
