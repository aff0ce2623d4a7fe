"""The review queue: refused requests and reported images, confirmed or overturned by an admin."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from .conftest import Server
from .test_books import DATABASES, PG_URL, _clean_postgres


def H(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def _generate(live: Server, key: str, prompt: str = "a red apple") -> httpx.Response:
    return httpx.post(
        live.url + "/v1/images/generations", json={"prompt": prompt}, headers=H(key), timeout=30
    )


def _image_id(live: Server, key: str) -> str:
    assert _generate(live, key).status_code == 200
    return httpx.get(live.url + "/v1/images", headers=H(key)).json()["data"][0]["id"]


def test_a_confirmed_report_withholds_the_image_and_an_overturned_one_serves_it_again(live: Server) -> None:
    _, admin = live.user("admin")
    _, key = live.user("member")
    image_id = _image_id(live, key)
    url = httpx.get(live.url + f"/v1/images/{image_id}", headers=H(key)).json()["url"]

    r = httpx.post(
        live.url + f"/v1/images/{image_id}/report", json={"reason": "not what I asked"}, headers=H(key)
    )
    assert r.status_code == 201 and r.json()["review"] == "pending" and r.json()["prompt"] == "a red apple"
    again = httpx.post(live.url + f"/v1/images/{image_id}/report", json={}, headers=H(key))
    assert again.status_code == 200 and again.json()["id"] == r.json()["id"]  # one pending report

    queue = httpx.get(live.url + "/v1/admin/reviews", headers=H(admin)).json()["data"]
    [item] = [q for q in queue if q["type"] == "report"]
    assert item["image_id"] == image_id and item["reason"] == "not what I asked"
    assert item["category"] == "violence" and 0 <= item["score"] <= 1  # the policy's reading of the prompt
    assert httpx.get(live.url + f"/v1/admin/images/{image_id}/content", headers=H(admin)).content[:8] == (
        b"\x89PNG\r\n\x1a\n"
    )

    d = httpx.post(live.url + f"/v1/admin/reviews/report/{item['id']}", json={"decision": "confirm"},
                   headers=H(admin))  # fmt: skip
    assert d.status_code == 200 and d.json()["review"] == "confirmed"
    content = httpx.get(live.url + f"/v1/images/{image_id}/content", headers=H(key))
    assert content.status_code == 410 and content.json()["error"]["code"] == "image_withheld"
    assert httpx.get(url).status_code == 410  # the signed URL too
    assert image_id not in [
        im["id"] for im in httpx.get(live.url + "/v1/images", headers=H(key)).json()["data"]
    ]
    assert httpx.get(live.url + f"/v1/images/{image_id}", headers=H(key)).json()["withheld"] is True
    up = httpx.post(live.url + "/v1/images/upscales", data={"image_id": image_id}, headers=H(key))
    assert up.status_code == 410  # nor is it an input any more
    withheld_png = httpx.get(live.url + f"/v1/admin/images/{image_id}/content", headers=H(admin)).content
    _, other = live.user("trusted")
    for who in (key, other):  # nor are its bytes, uploaded by its owner or anyone else
        r = httpx.post(
            live.url + "/v1/images/variations",
            files={"image": ("a.png", withheld_png, "image/png")},
            data={"size": "256x256"},
            headers=H(who),
        )
        assert (r.status_code, r.json()["error"]["code"]) == (410, "image_withheld"), r.text
        assert image_id not in r.text
    assert not httpx.get(live.url + "/v1/admin/reviews", headers=H(admin)).json()["data"]  # nothing pending

    d = httpx.post(live.url + f"/v1/admin/reviews/report/{item['id']}", json={"decision": "overturn"},
                   headers=H(admin))  # fmt: skip
    assert d.json()["review"] == "overturned"
    assert httpx.get(live.url + f"/v1/images/{image_id}/content", headers=H(key)).status_code == 200
    decided = httpx.get(live.url + "/v1/admin/reviews?review=overturned", headers=H(admin)).json()["data"]
    assert [q["id"] for q in decided if q["type"] == "report"] == [item["id"]]


def test_an_overturned_refusal_is_no_offence(live: Server) -> None:
    _, admin = live.user("admin")
    _, key = live.user("member")
    rules = live.sv.offenders
    for _ in range(rules.throttle_after):
        assert _generate(live, key, "something forbidden").status_code == 400
    assert _generate(live, key).status_code == 200  # throttled: one request per throttle_seconds
    assert _generate(live, key).status_code == 429

    queue = httpx.get(live.url + "/v1/admin/reviews", headers=H(admin)).json()["data"]
    refusals = [q for q in queue if q["type"] == "refusal"]
    assert len(refusals) == rules.throttle_after and all(q["category"] == "violence" for q in refusals)
    for q in refusals:
        r = httpx.post(live.url + f"/v1/admin/reviews/refusal/{q['id']}", json={"decision": "overturn"},
                       headers=H(admin))  # fmt: skip
        assert r.status_code == 200 and r.json()["review"] == "overturned" and r.json()["reviewed_by"]
    assert live.sv.images.recent_offences(refusals[0]["user_id"]) == 0
    assert _generate(live, key).status_code == 200  # the throttle is lifted


def test_bad_review_requests(live: Server) -> None:
    _, admin = live.user("admin")
    _, key = live.user("member")
    _, other = live.user("member")
    image_id = _image_id(live, key)
    assert (
        httpx.post(live.url + f"/v1/images/{image_id}/report", json={}, headers=H(other)).status_code == 404
    )
    long = httpx.post(live.url + f"/v1/images/{image_id}/report", json={"reason": "x" * 501}, headers=H(key))
    assert long.status_code == 400 and long.json()["error"]["param"] == "reason"
    extra = httpx.post(live.url + f"/v1/images/{image_id}/report", json={"why": "?"}, headers=H(key))
    assert extra.status_code == 400
    for path in ("/v1/admin/reviews", f"/v1/admin/images/{image_id}/content"):
        assert httpx.get(live.url + path, headers=H(key)).status_code == 403
    bad = httpx.post(live.url + "/v1/admin/reviews/refusal/1", json={"decision": "maybe"}, headers=H(admin))
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "decision"
    assert httpx.post(live.url + "/v1/admin/reviews/job/1", json={"decision": "confirm"},
                      headers=H(admin)).status_code == 400  # fmt: skip
    missing = httpx.post(
        live.url + "/v1/admin/reviews/report/999", json={"decision": "confirm"}, headers=H(admin)
    )
    assert missing.status_code == 404
    assert httpx.get(live.url + "/v1/admin/reviews?review=later", headers=H(admin)).status_code == 400


def test_a_withheld_image_is_not_served_through_its_job(live: Server) -> None:
    """A job asked for b64_json carries its images' bytes: a confirmed report takes them out of it too."""
    _, admin = live.user("admin")
    _, key = live.user("member")
    body = {"prompt": "a red apple", "size": "256x256", "n": 2, "response_format": "b64_json"}
    r = httpx.post(live.url + "/v1/images/generations", json=body, headers={**H(key), "Prefer": "respond-async"})
    job_id = r.json()["id"]
    job = _wait_job(live, key, job_id)
    withheld, _ = job["image_ids"]
    report = httpx.post(live.url + f"/v1/images/{withheld}/report", json={}, headers=H(key)).json()
    httpx.post(live.url + f"/v1/admin/reviews/report/{report['id']}", json={"decision": "confirm"}, headers=H(admin))
    for job in (
        httpx.get(live.url + f"/v1/jobs/{job_id}", headers=H(key)).json(),
        httpx.get(live.url + "/v1/jobs", headers=H(key)).json()["data"][0],
    ):
        first, second = job["result"]["data"]
        assert first == {"b64_json": None, "withheld": True}
        assert second["b64_json"] and "withheld" not in second


def _wait_job(live: Server, key: str, job_id: str) -> dict:
    import time

    for _ in range(500):
        job = httpx.get(live.url + f"/v1/jobs/{job_id}", headers=H(key)).json()
        if job["status"] == "succeeded":
            return job
        time.sleep(0.02)
    raise AssertionError(job)


def _image_of_a_member(database: str, tmp_path: Path) -> tuple[Any, str, str]:
    """A database (SQLite, or the test PostgreSQL cleaned) with a member and one image of theirs."""
    from unclip.service.auth import create_user
    from unclip.service.db import Database, ImageRecord

    if database == "postgres" and not PG_URL:
        pytest.skip("UNCLIP_TEST_POSTGRES_URL is not set")
    db = Database(_clean_postgres() if database == "postgres" else f"sqlite:///{tmp_path / 'reviews.db'}")
    with db.session() as s:
        user = create_user(s, "reporter@example.test", role="member")
        image = ImageRecord(user_id=user.id, sha256="0" * 64, kind="generation", width=64, height=64)
        s.add(image)
        s.flush()
        return db, user.id, image.id


@pytest.mark.parametrize("database", DATABASES)
def test_two_reports_of_one_image_sent_at_once_make_one_queue_item(database: str, tmp_path: Path) -> None:
    import threading
    import time

    from sqlalchemy import func, select

    from unclip.service.db import ImageReport
    from unclip.service.reviews import report_image

    db, user_id, image_id = _image_of_a_member(database, tmp_path)
    got: list[tuple[int, bool]] = []

    def second() -> None:
        with db.session() as s:  # reads no pending report yet, then waits on the first one's insert
            report, new = report_image(s, user_id, image_id, "the same, twice")
            got.append((report.id, new))

    with db.session() as s:
        first, new = report_image(s, user_id, image_id, "the same, twice")
        assert new
        t = threading.Thread(target=second)
        t.start()
        time.sleep(0.5)
    t.join(timeout=30)
    assert got == [(first.id, False)]
    with db.session() as s:
        assert s.scalar(select(func.count()).select_from(ImageReport)) == 1
    db.dispose()


@pytest.mark.parametrize("database", DATABASES)
def test_the_migration_keeps_the_first_of_pending_duplicates(database: str, tmp_path: Path) -> None:
    from alembic import command
    from sqlalchemy import text

    from unclip.service.db import Database, alembic_config

    if database == "postgres" and not PG_URL:
        pytest.skip("UNCLIP_TEST_POSTGRES_URL is not set")
    url = _clean_postgres() if database == "postgres" else f"sqlite:///{tmp_path / 'old.db'}"
    db = Database(url, run_migrations=False)
    cfg = alembic_config(db.engine.url.render_as_string(hide_password=False))
    with db.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0004")
        conn.execute(text("INSERT INTO users (id, email, name, role, status, credits, credits_period, created_at) "
                          "VALUES ('u1', 'a@example.test', '', 'member', 'active', 0, '', 0)"))
        conn.execute(text("INSERT INTO images (id, user_id, sha256, kind, model, prompt, width, height, created_at) "
                          "VALUES ('img1', 'u1', 'x', 'generation', '', '', 64, 64, 0)"))
        for review in ("pending", "pending", "confirmed", "pending"):
            conn.execute(text("INSERT INTO image_reports (image_id, user_id, reason, created_at, review) "
                              f"VALUES ('img1', 'u1', '', 0, '{review}')"))
        command.upgrade(cfg, "head")
        rows = conn.execute(text("SELECT id, review FROM image_reports ORDER BY id")).all()
    assert [tuple(r) for r in rows] == [(1, "pending"), (3, "confirmed")]
    db.dispose()


@pytest.mark.parametrize("database", DATABASES)
@pytest.mark.parametrize(
    ("states", "decisions", "withheld"),
    [
        (("confirmed", "pending"), ("overturn", "confirm"), True),  # B stands confirmed: withheld
        (("confirmed", "confirmed"), ("overturn", "overturn"), False),  # none stands: served again
    ],
)
def test_two_decisions_about_one_images_reports_at_once_leave_it_as_its_reports_say(
    database: str, tmp_path: Path, states: tuple[str, str], decisions: tuple[str, str], withheld: bool
) -> None:
    import threading
    import time

    from unclip.service.db import ImageRecord, ImageReport
    from unclip.service.reviews import decide

    db, user_id, image_id = _image_of_a_member(database, tmp_path)
    with db.session() as s:
        reports = [ImageReport(image_id=image_id, user_id=user_id, reason="r", review=st) for st in states]
        s.add_all(reports)
        s.get(ImageRecord, image_id).withheld_at = 1.0
        s.flush()
        ids = [r.id for r in reports]
    first_decided = threading.Event()

    def second() -> None:
        first_decided.wait(10)
        with db.session() as s:  # reads the reports while the first decision is not committed yet
            decide(s, "admin-2", "report", ids[1], decisions[1])

    t = threading.Thread(target=second)
    t.start()
    with db.session() as s:
        decide(s, "admin-1", "report", ids[0], decisions[0])
        first_decided.set()
        time.sleep(0.5)  # the second decision runs meanwhile
    t.join(20)
    with db.session() as s:
        assert (s.get(ImageRecord, image_id).withheld_at is not None) is withheld
    db.dispose()


def test_a_job_whose_input_is_withheld_while_it_waits_fails_refunded(live: Server) -> None:
    """A blend queued before its image was withheld must not run on it (nor charge for it)."""
    import threading
    import time

    _, admin = live.user("admin")
    _, key = live.user("trusted")
    image_id = _image_id(live, key)
    balance = httpx.get(live.url + "/v1/me", headers=H(key)).json()["credits"]
    live.engine.gate = threading.Event()  # the first job holds the queue; the blend waits behind it
    try:
        first = httpx.post(live.url + "/v1/images/generations", json={"prompt": "a pear"},
                           headers={**H(key), "Prefer": "respond-async"}).json()  # fmt: skip
        blend = {"items": [{"image_id": image_id}, {"prompt": "a pear"}], "size": "256x256"}
        r = httpx.post(live.url + "/v1/images/blends", json=blend, headers={**H(key), "Prefer": "respond-async"})
        assert r.status_code == 202, r.text
        report = httpx.post(live.url + f"/v1/images/{image_id}/report", json={}, headers=H(key)).json()
        d = httpx.post(live.url + f"/v1/admin/reviews/report/{report['id']}", json={"decision": "confirm"},
                       headers=H(admin))  # fmt: skip
        assert d.status_code == 200
    finally:
        live.engine.gate.set()
    _wait_job(live, key, first["id"])
    for _ in range(500):
        job = httpx.get(live.url + f"/v1/jobs/{r.json()['id']}", headers=H(key)).json()
        if job["status"] not in ("queued", "running"):
            break
        time.sleep(0.02)
    assert job["status"] == "failed" and job["error"]["code"] == "image_withheld", job
    assert "blend" not in [kind for kind, _ in live.engine.calls]
    first_cost = httpx.get(live.url + f"/v1/jobs/{first['id']}", headers=H(key)).json()["cost"]
    assert httpx.get(live.url + "/v1/me", headers=H(key)).json()["credits"] == balance - first_cost


def test_what_was_made_from_a_withheld_image_is_withheld_with_it(live: Server) -> None:
    """A confirmed report withheld only the reported image's row: its upscale (the same picture, larger), and
    an upscale of that, were still served and could still be read by other requests."""
    _, admin = live.user("admin")
    _, key = live.user("member")

    def decide(report_id: int, decision: str) -> None:
        r = httpx.post(live.url + f"/v1/admin/reviews/report/{report_id}", json={"decision": decision},
                       headers=H(admin))  # fmt: skip
        assert r.status_code == 200, r.text

    def served(image_id: str) -> int:
        return httpx.get(live.url + f"/v1/images/{image_id}/content", headers=H(key)).status_code

    def newest() -> str:
        return httpx.get(live.url + "/v1/images", headers=H(key)).json()["data"][0]["id"]

    r = httpx.post(live.url + "/v1/images/generations", json={"prompt": "a pear", "size": "256x256"}, headers=H(key))
    assert r.status_code == 200, r.text
    original = newest()
    r = httpx.post(live.url + "/v1/images/upscales", data={"image_id": original}, headers=H(key))
    assert r.status_code == 200, r.text
    larger = newest()  # the same picture, 4x
    blend = {"items": [{"image_id": larger}, {"prompt": "a hat"}], "size": "256x256"}
    r = httpx.post(live.url + "/v1/images/blends", json=blend, headers=H(key))
    assert r.status_code == 200, r.text
    largest = newest()  # made from that in turn
    chain = [original, larger, largest]
    reported = httpx.post(live.url + f"/v1/images/{original}/report", json={"reason": "x"}, headers=H(key)).json()
    decide(reported["id"], "confirm")
    assert [served(i) for i in chain] == [410, 410, 410]
    assert httpx.post(live.url + "/v1/images/blends", json=blend, headers=H(key)).status_code == 410
    own = httpx.post(live.url + f"/v1/images/{largest}/report", json={"reason": "y"}, headers=H(key)).json()
    decide(own["id"], "confirm")  # the largest is withheld on its own account too
    decide(reported["id"], "overturn")
    assert [served(i) for i in chain] == [200, 200, 410]


def test_a_reported_blend_shows_its_prompts(live: Server) -> None:
    """A blend's images were stored with no prompt: its history and the review queue showed none."""
    _, admin = live.user("admin")
    _, key = live.user("member")
    blend = {"items": [{"prompt": "a red apple"}, {"prompt": "a knife"}], "size": "256x256"}
    assert httpx.post(live.url + "/v1/images/blends", json=blend, headers=H(key)).status_code == 200
    image_id = httpx.get(live.url + "/v1/images", headers=H(key)).json()["data"][0]["id"]
    assert httpx.get(live.url + f"/v1/images/{image_id}", headers=H(key)).json()["prompt"] == "a red apple, a knife"
    report = httpx.post(live.url + f"/v1/images/{image_id}/report", json={}, headers=H(key)).json()
    queue = httpx.get(live.url + "/v1/admin/reviews", headers=H(admin)).json()["data"]
    assert [q["prompt"] for q in queue if q["type"] == "report" and q["id"] == report["id"]] == ["a red apple, a knife"]
