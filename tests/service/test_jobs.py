"""Jobs: async submission, progress over SSE, cancel, the bounded queue, timeouts and restarts."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import httpx
import openai
import pytest

from .conftest import Server, make_settings, png, start_server
from .fakes import BatchFakeEngine, FakeEngine

ASYNC = {"Prefer": "respond-async"}


def H(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


def wait_status(srv: Server, key: str, job_id: str, status: str, timeout: float = 10) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = httpx.get(f"{srv.url}/v1/jobs/{job_id}", headers=H(key)).json()
        if job["status"] == status:
            return job
        time.sleep(0.02)
    raise AssertionError(f"job {job_id} never reached {status}: {job}")


def test_async_job_with_sse_progress(live: Server, member: tuple[str, str]) -> None:
    live.engine.delay = 0.05
    r = httpx.post(
        live.url + "/v1/images/generations",
        json={"prompt": "x", "size": "256x256", "n": 2},
        headers={**H(member[1]), **ASYNC},
    )
    assert r.status_code == 202 and r.json()["object"] == "job"
    job_id = r.json()["id"]
    events = []
    with httpx.stream("GET", f"{live.url}/v1/jobs/{job_id}/events", headers=H(member[1]), timeout=20) as resp:
        assert resp.headers["content-type"].startswith("text/event-stream")
        event = None
        for line in resp.iter_lines():
            if line.startswith("event: "):
                event = line[7:]
            elif line.startswith("data: "):
                events.append((event, json.loads(line[6:])))
    kinds = [e for e, _ in events]
    assert kinds[-1] == "done" and "progress" in kinds
    progress = [d for e, d in events if e == "progress"]
    assert any(d["status"] == "running" for d in progress) and progress[-1]["step"] == 4
    done = events[-1][1]
    assert done["status"] == "succeeded" and len(done["result"]["data"]) == 2
    assert httpx.get(done["result"]["data"][0]["url"]).status_code == 200


def test_cancel_running_job_refunds(live: Server) -> None:
    _uid, key = live.user("member")
    live.engine.gate = threading.Event()  # hold the engine mid-job
    before = httpx.get(live.url + "/v1/me", headers=H(key)).json()["credits"]
    job_id = httpx.post(
        live.url + "/v1/images/generations",
        json={"prompt": "x", "size": "256x256"},
        headers={**H(key), **ASYNC},
    ).json()["id"]
    wait_status(live, key, job_id, "running")
    r = httpx.post(f"{live.url}/v1/jobs/{job_id}/cancel", headers=H(key))
    assert r.status_code == 200 and r.json()["status"] == "cancelled"
    assert httpx.get(live.url + "/v1/me", headers=H(key)).json()["credits"] == before
    live.engine.gate = None


def test_queue_full_is_503_with_retry_after(tmp_path: Path) -> None:
    engine = FakeEngine()
    engine.gate = threading.Event()
    srv = start_server(make_settings(tmp_path, queue_size=2), engine=engine)
    try:
        _, key = srv.user("member")
        ids = [
            httpx.post(
                srv.url + "/v1/images/generations",
                json={"prompt": "x", "size": "256x256"},
                headers={**H(key), **ASYNC},
            ).json()["id"]
            for _ in range(2)
        ]
        with pytest.raises(openai.InternalServerError) as e:
            srv.client(key).images.generate(prompt="x", size="256x256")
        assert e.value.status_code == 503 and e.value.response.headers["retry-after"]
        engine.gate.set()
        for job_id in ids:
            wait_status(srv, key, job_id, "succeeded")
        assert srv.client(key).images.generate(prompt="x", size="256x256").data  # room again
    finally:
        engine.gate.set()
        srv.stop()


def test_request_timeout_cancels(tmp_path: Path) -> None:
    engine = FakeEngine()
    engine.gate = threading.Event()
    srv = start_server(make_settings(tmp_path, request_timeout_s=0.5), engine=engine)
    try:
        _, key = srv.user("member")
        with pytest.raises(openai.APIStatusError) as e:
            srv.client(key).images.generate(prompt="x", size="256x256")
        assert e.value.status_code == 504
        jobs = httpx.get(srv.url + "/v1/jobs", headers=H(key)).json()["data"]
        assert jobs[0]["status"] == "cancelled"
    finally:
        engine.gate.set()
        srv.stop()


class _SlowTail(FakeEngine):
    """Work after the last step (decoding, in the real engine), where no cancel is looked at."""

    def generate(self, *args, **kw):  # type: ignore[no-untyped-def]
        images = super().generate(*args, **kw)
        time.sleep(1.5)
        return images


def _books(srv: Server, user_id: str) -> tuple[int, list[tuple[str, int]]]:
    from sqlalchemy import select

    from unclip.service.db import CreditEntry, User

    with srv.sv.db.session() as s:
        entries = s.scalars(select(CreditEntry).where(CreditEntry.user_id == user_id).order_by(CreditEntry.id))
        return s.get(User, user_id).credits, [(e.reason, e.delta) for e in entries]


def _refunded(balance: int, ledger: list[tuple[str, int]]) -> bool:
    """The last job's charge was refunded, and the ledger sums to the balance."""
    (charged, cost), (refunded, back) = ledger[-2:]
    return (charged, refunded) == ("charge", "refund") and back == -cost > 0 and sum(d for _, d in ledger) == balance


def test_a_timeout_after_the_last_step_keeps_its_word(tmp_path: Path) -> None:
    """The 504 says cancelled and refunded: a job that times out after its last step must not then succeed
    and stay charged (the SDK retries a 504, and the user would pay twice)."""
    srv = start_server(make_settings(tmp_path, request_timeout_s=0.5), engine=_SlowTail())
    try:
        uid, key = srv.user("member")
        r = httpx.post(srv.url + "/v1/images/generations", json={"prompt": "x", "size": "256x256"}, headers=H(key))
        assert r.status_code == 504 and r.json()["error"]["code"] == "timeout"
        job = httpx.get(srv.url + "/v1/jobs", headers=H(key)).json()["data"][0]
        assert job["status"] == "cancelled"
        assert _refunded(*_books(srv, uid))
    finally:
        srv.stop()


def test_images_that_cannot_be_stored_fail_the_job_and_refund_it(tmp_path: Path) -> None:
    srv = start_server(make_settings(tmp_path))
    store = srv.sv.jobs.runner.store
    put = store.put

    def disk_full(data: bytes) -> str:
        store.put = put  # once
        raise OSError(28, "No space left on device")

    store.put = disk_full
    try:
        uid, key = srv.user("member")
        r = httpx.post(srv.url + "/v1/images/generations", json={"prompt": "x", "size": "256x256"}, headers=H(key))
        assert r.status_code == 500 and r.json()["error"]["code"] == "storage_error"
        assert "refunded" in r.json()["error"]["message"]
        job = httpx.get(srv.url + "/v1/jobs", headers=H(key)).json()["data"][0]
        assert job["status"] == "failed" and _refunded(*_books(srv, uid))
        assert srv.sv.jobs.depth() == 0  # its place in the queue is free again
        assert srv.client(key).images.generate(prompt="x", size="256x256").data  # the next one is stored
    finally:
        srv.stop()


def test_a_cancelled_job_is_answered_409_that_sdks_do_not_retry(tmp_path: Path) -> None:
    engine = FakeEngine()
    engine.gate = threading.Event()
    srv = start_server(make_settings(tmp_path), engine=engine)
    try:
        _, key = srv.user("member")
        answer: list[httpx.Response] = []
        body = {"prompt": "x", "size": "256x256"}
        waiting = threading.Thread(
            target=lambda: answer.append(
                httpx.post(srv.url + "/v1/images/generations", json=body, headers=H(key), timeout=30)
            )
        )
        waiting.start()
        deadline = time.monotonic() + 10
        while not (jobs := httpx.get(srv.url + "/v1/jobs", headers=H(key)).json()["data"]):
            assert time.monotonic() < deadline
            time.sleep(0.02)
        httpx.post(f"{srv.url}/v1/jobs/{jobs[0]['id']}/cancel", headers=H(key))
        waiting.join(10)
        assert answer[0].status_code == 409 and answer[0].json()["error"]["code"] == "job_cancelled"
        assert answer[0].headers["x-should-retry"] == "false"
    finally:
        engine.gate.set()
        srv.stop()


def test_restart_requeues_and_keeps_images(tmp_path: Path) -> None:
    """Shutdown with a running and a queued job: both finish after the restart; stored images survive."""
    engine = FakeEngine()
    srv = start_server(make_settings(tmp_path, shutdown_grace_s=0.3), engine=engine)
    _, key = srv.user("member")
    first = srv.client(key).images.generate(prompt="kept", size="256x256").data[0].url
    engine.gate = threading.Event()
    ids = [
        httpx.post(
            srv.url + "/v1/images/generations",
            json={"prompt": f"p{i}", "size": "256x256"},
            headers={**H(key), **ASYNC},
        ).json()["id"]
        for i in range(2)
    ]
    wait_status(srv, key, ids[0], "running")
    srv.stop()  # grace expires: the running job is cancelled and re-queued, the queued one stays queued
    from sqlalchemy import select

    from unclip.service.db import Job

    with srv.sv.db.session() as s:
        assert {j.status for j in s.scalars(select(Job).where(Job.id.in_(ids)))} == {"queued"}

    srv2 = start_server(make_settings(tmp_path), engine=FakeEngine())
    try:
        for job_id in ids:
            job = wait_status(srv2, key, job_id, "succeeded")
            assert httpx.get(job["result"]["data"][0]["url"]).status_code == 200
        assert (
            httpx.get(first.replace(srv.url, srv2.url)).status_code == 200
        )  # same secret, same store: old URLs still valid
        assert len(httpx.get(srv2.url + "/v1/images", headers=H(key)).json()["data"]) == 3
    finally:
        srv2.stop()


def test_outpaint_blend_upscale_and_history(live: Server, trusted: tuple[str, str]) -> None:
    key = trusted[1]
    client = live.client(key)
    client.images.generate(prompt="seed image", size="256x256")
    image_id = httpx.get(live.url + "/v1/images", headers=H(key)).json()["data"][0]["id"]
    r = httpx.post(
        live.url + "/v1/images/outpaints",
        headers=H(key),
        data={
            "image_id": image_id,
            "prompt": "more sky",
            "left": "64",
            "right": "64",
            "response_format": "b64_json",
        },
    )
    assert r.status_code == 200, r.text
    r = httpx.post(
        live.url + "/v1/images/outpaints",
        headers=H(key),
        files={"image": ("a.png", png(64), "image/png")},
        data={"prompt": "more", "top": "32"},
    )
    assert r.status_code == 200, r.text
    r = httpx.post(
        live.url + "/v1/images/blends",
        headers=H(key),
        json={"items": [{"prompt": "a cat"}, {"image_id": image_id, "weight": 0.5}], "size": "256x256"},
    )
    assert r.status_code == 200, r.text
    r = httpx.post(live.url + "/v1/images/upscales", headers=H(key), data={"image_id": image_id})
    assert r.status_code == 200, r.text
    hist = httpx.get(live.url + "/v1/images?limit=2", headers=H(key)).json()
    assert hist["has_more"] and len(hist["data"]) == 2
    assert hist["data"][0]["kind"] == "upscale" and hist["data"][0]["width"] == 1024
    more = httpx.get(f"{live.url}/v1/images?limit=10&after={hist['last_id']}", headers=H(key)).json()
    assert [d["kind"] for d in more["data"]] == ["outpaint", "outpaint", "generation"]


def test_an_outpaint_costs_the_frames_it_paints(live: Server, trusted: tuple[str, str]) -> None:
    """Each 256 px frame is priced as a 256x256 image, whatever `size` says (it was priced by `size`, which
    an outpaint ignores: 1 credit for any canvas)."""
    key = trusted[1]
    r = httpx.post(
        live.url + "/v1/images/outpaints",
        headers={**H(key), **ASYNC},
        files={"image": ("a.png", png(256), "image/png")},
        data={"prompt": "more", "left": "256", "right": "256", "size": "256x256"},
    )
    assert r.status_code == 202, r.text
    assert r.json()["cost"] == 4  # a 768x256 canvas: frames at x = 0, 128, 384, 512 (256 is the original)
    wait_status(live, key, r.json()["id"], "succeeded")


def test_outpaint_frames_match_the_engines_plan() -> None:
    from PIL import Image

    from unclip.engine.outpaint import FRAME, OVERLAP, frame_count, plan_canvas

    for size, sides in [((256, 256), (256, 256, 0, 0)), ((64, 64), (0, 0, 32, 0)), ((300, 200), (40, 0, 512, 90))]:
        plan = plan_canvas(Image.new("RGB", size), *sides, None, FRAME, OVERLAP)
        assert frame_count(size, *sides) == len(plan.frames) > 0


def test_member_cannot_outpaint(live: Server, member: tuple[str, str]) -> None:
    r = httpx.post(
        live.url + "/v1/images/outpaints",
        headers=H(member[1]),
        files={"image": ("a.png", png(64), "image/png")},
        data={"prompt": "more", "top": "32"},
    )
    assert r.status_code == 403


def test_finished_jobs_handles_are_dropped_after_a_while() -> None:
    from unclip.service.runner import KEEP_DONE_S, Handle, prune_handles

    old, recent, waited, running = Handle("old"), Handle("recent"), Handle("waited"), Handle("running")
    for h in (old, recent, waited):
        h.done.set()
    old.changed = waited.changed = time.monotonic() - KEEP_DONE_S - 1
    waited.waiters = 1
    running.changed = time.monotonic() - 10 * KEEP_DONE_S
    handles = {h.job_id: h for h in (old, recent, waited, running)}
    prune_handles(handles)
    assert sorted(handles) == ["recent", "running", "waited"]


def test_queued_compatible_generations_run_in_one_pass(tmp_path: Path, tiny_model: Path) -> None:
    """Jobs waiting in the queue (here: left queued by a stopped server) that can share a pass run in one
    engine call; each gets its own images, stored and charged once."""
    from sqlalchemy import select

    from unclip.engine import Engine
    from unclip.service.db import ImageRecord, Job

    passes: list[list[str]] = []

    def loader(path: Path) -> Engine:
        engine = Engine.load(path)
        batch = engine.generate_batch

        def spy(prompts, *args, **kw):  # type: ignore[no-untyped-def]
            passes.append(list(prompts))
            return batch(prompts, *args, **kw)

        engine.generate_batch = spy  # type: ignore[method-assign]
        return engine

    settings = make_settings(tmp_path, model=str(tiny_model))
    srv = start_server(settings, real_engine=True, engine_loader=loader)
    uid, key = srv.user("trusted")
    srv.stop()
    with srv.sv.db.session() as s:
        for i, size in enumerate(["256x256"] * 3 + ["512x512"]):
            params = {"prompt": f"a cat {i}", "n": 1, "size": size, "response_format": "url"}
            s.add(Job(user_id=uid, kind="generation", model="tiny", params=params, cost=1))
    srv = start_server(settings, real_engine=True, engine_loader=loader)
    try:
        with srv.sv.db.session() as s:
            ids = [j.id for j in s.scalars(select(Job).order_by(Job.created_at))]
        for job_id in ids:
            wait_status(srv, key, job_id, "succeeded", timeout=60)
        assert sorted(map(sorted, passes)) == [["a cat 0", "a cat 1", "a cat 2"], ["a cat 3"]]
        with srv.sv.db.session() as s:
            for i, job_id in enumerate(ids):
                rows = list(s.scalars(select(ImageRecord).where(ImageRecord.job_id == job_id)))
                assert [r.prompt for r in rows] == [f"a cat {i}"] and rows[0].width == (512 if i == 3 else 256)
    finally:
        srv.stop()


def _two_workers_and_a_batch(tmp_path: Path, batch: FakeEngine) -> tuple[Server, FakeEngine, FakeEngine]:
    """A server with two workers: each is first held by a job of its own slow model, so that a test can
    decide which worker takes the batchable jobs (`batch`, the default model) and when."""
    slow1, slow2 = FakeEngine(), FakeEngine()
    slow1.gate, slow2.gate = threading.Event(), threading.Event()
    engines = {"unclip-test": batch, "slow1": slow1, "slow2": slow2}
    srv = start_server(make_settings(tmp_path, workers=2, batch_images=8), engines=engines)
    return srv, slow1, slow2


def _job_status(srv: Server, key: str) -> dict[str, str]:
    """Each of the key's jobs' status, by prompt."""
    from sqlalchemy import select

    from unclip.service.db import Job

    ids = {j["id"] for j in httpx.get(srv.url + "/v1/jobs", headers=H(key)).json()["data"]}
    with srv.sv.db.session() as s:
        return {j.params["prompt"]: j.status for j in s.scalars(select(Job).where(Job.id.in_(ids)))}


def _until(check, timeout: float = 20) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_a_job_claimed_into_another_workers_pass_is_answered_with_its_images(tmp_path: Path) -> None:
    """Worker A claims J2 into J1's pass; before A marks it running, worker B takes J2 off the queue. B must
    wait for A's pass (it answered 500 "The job failed." while J2 went on to succeed, charged, and leaked
    its queue place)."""
    batch = BatchFakeEngine()
    srv, slow1, slow2 = _two_workers_and_a_batch(tmp_path, batch)
    claim = srv.sv.jobs.runner.claim_companions

    def slow_claim(job, max_images):  # type: ignore[no-untyped-def]
        claimed = claim(job, max_images)
        if claimed:
            slow2.gate.set()  # worker B frees up now, while A has not yet marked its companions running
            time.sleep(1.0)
        return claimed

    srv.sv.jobs.runner.claim_companions = slow_claim
    try:
        _, key = srv.user("trusted")
        for model in ("slow1", "slow2"):
            body = {"prompt": model, "model": model, "size": "256x256"}
            httpx.post(srv.url + "/v1/images/generations", json=body, headers={**H(key), **ASYNC})
            _until(lambda model=model: _job_status(srv, key)[model] == "running")
        answers: dict[str, httpx.Response] = {}

        def call(prompt: str) -> None:
            body = {"prompt": prompt, "size": "256x256"}
            answers[prompt] = httpx.post(srv.url + "/v1/images/generations", json=body, headers=H(key), timeout=60)

        callers = [threading.Thread(target=call, args=(p,)) for p in ("J1", "J2")]
        for i, t in enumerate(callers):
            t.start()  # J1 queued before J2
            _until(lambda i=i: len(_job_status(srv, key)) == 3 + i)
        slow1.gate.set()
        for t in callers:
            t.join(30)
        assert {p: r.status_code for p, r in answers.items()} == {"J1": 200, "J2": 200}
        assert _job_status(srv, key) == {p: "succeeded" for p in ("slow1", "slow2", "J1", "J2")}
        _until(lambda: srv.sv.jobs.depth() == 0)
        batched = [c for name, c in batch.calls if name == "generate_batch"]
        assert [sorted(c["prompts"]) for c in batched] == [["J1", "J2"]]
    finally:
        slow1.gate.set()
        slow2.gate.set()
        srv.stop()


def test_a_companion_put_back_by_a_cancel_runs_again(tmp_path: Path) -> None:
    """J1 and J2 share worker A's pass; worker B, which took J2 off the queue, waits for that pass. J1 is
    cancelled, so J2 goes back to the queue: B must run it (it waited forever, J2 queued and charged)."""
    batch = BatchFakeEngine()
    batch.gate = threading.Event()
    srv, slow1, slow2 = _two_workers_and_a_batch(tmp_path, batch)
    try:
        _, key = srv.user("trusted")
        ids = {}
        for prompt, model in (("slow1", "slow1"), ("slow2", "slow2"), ("J1", None), ("J2", None)):
            body = {"prompt": prompt, "size": "256x256", **({"model": model} if model else {})}
            ids[prompt] = httpx.post(
                srv.url + "/v1/images/generations", json=body, headers={**H(key), **ASYNC}
            ).json()["id"]
            if model:
                _until(lambda p=prompt: _job_status(srv, key)[p] == "running")
        slow1.gate.set()  # worker A takes J1, with J2 in its pass
        _until(lambda: _job_status(srv, key)["J2"] == "running")
        slow2.gate.set()  # worker B takes J2 off the queue and waits for A's pass
        _until(lambda: _job_status(srv, key)["slow2"] == "succeeded")
        time.sleep(0.3)
        httpx.post(f"{srv.url}/v1/jobs/{ids['J1']}/cancel", headers=H(key))
        batch.gate.set()
        wait_status(srv, key, ids["J2"], "succeeded")
        assert _job_status(srv, key)["J1"] == "cancelled"
        _until(lambda: srv.sv.jobs.depth() == 0)
    finally:
        for gate in (slow1.gate, slow2.gate, batch.gate):
            gate.set()
        srv.stop()


def test_an_image_shows_its_seed_settings_and_provenance(live: Server, member: tuple[str, str]) -> None:
    """What the web app's image viewer shows, from the image's own signed metadata and its request."""
    body = {"prompt": "a cat", "size": "256x256", "n": 2, "seed": 41, "steps": 3, "guidance": 5.0}
    job = httpx.post(live.url + "/v1/images/generations", json=body, headers={**H(member[1]), **ASYNC}).json()
    job = wait_status(live, member[1], job["id"], "succeeded")
    assert len(job["image_ids"]) == 2
    image = httpx.get(f"{live.url}/v1/images/{job['image_ids'][0]}", headers=H(member[1])).json()
    assert image["prompt"] == "a cat" and image["job_id"] == job["id"] and image["seed"] == 41
    assert image["settings"] == {"size": "256x256", "n": 2, "steps": 3, "guidance": 5.0}
    assert image["provenance"]["signed"] is True and image["provenance"]["request_id"]
    _, other = live.user("member")
    r = httpx.get(f"{live.url}/v1/images/{job['image_ids'][0]}", headers=H(other))
    assert r.status_code == 404 and r.json()["error"]["code"] == "image_not_found"


def test_a_batched_pass_keeps_every_setting_a_lone_job_keeps() -> None:
    """Guidance 0 is a setting (no guidance), not a missing one: a pass of batched jobs dropped it and drew
    with the default guidance, so the same request gave other images when it happened to share a pass."""
    from unclip.service.db import Job
    from unclip.service.runner import Handle, JobRunner

    engine = BatchFakeEngine()

    class Registry:
        def get(self, name: str) -> BatchFakeEngine:
            return engine

    runner = JobRunner(None, None, Registry())  # type: ignore[arg-type]
    params = {"n": 1, "size": "256x256", "guidance": 0.0, "steps": 3}
    jobs = [
        Job(id=f"job_{i}", user_id="u", kind="generation", model="m", params={**params, "prompt": f"cat {i}"})
        for i in range(2)
    ]
    outs = runner.execute_batch(jobs, [Handle(j.id) for j in jobs])
    assert [o.status for o in outs] == ["succeeded", "succeeded"]
    [(name, call)] = engine.calls
    assert name == "generate_batch" and call["guidance"] == 0.0 and call["steps"] == 3
    assert "negative_prompt" not in call


def test_a_job_cancelled_before_its_batched_pass_ends_cancelled_and_the_others_run() -> None:
    from unclip.service.db import Job
    from unclip.service.runner import Handle, JobRunner

    engine = BatchFakeEngine()

    class Registry:
        def get(self, name: str) -> BatchFakeEngine:
            return engine

    runner = JobRunner(None, None, Registry())  # type: ignore[arg-type]
    params = {"n": 1, "size": "256x256"}
    jobs = [
        Job(id=f"job_{i}", user_id="u", kind="generation", model="m", params={**params, "prompt": f"cat {i}"})
        for i in range(3)
    ]
    jobs[1].cancel_requested = "user"  # asked while it waited, put back in the queue by a shutdown
    outs = runner.execute_batch(jobs, [Handle(j.id) for j in jobs])
    assert [o.status for o in outs] == ["succeeded", "cancelled", "succeeded"]
    [(name, call)] = engine.calls
    assert name == "generate_batch" and len(call["prompts"]) == 2


def test_a_broker_workers_claimed_job_keeps_its_lease_while_the_model_loads(tmp_path: Path) -> None:
    """Finding batch companions loads the model; the claimed job's lease was renewed only after that, so a
    load longer than the lease let another worker take over a job whose worker was alive."""
    pytest.importorskip("dramatiq")
    from unclip.service.db import Database, Job, User, now
    from unclip.service.runner import JobRunner, worker_token
    from unclip.service.worker import BrokerWorker

    for part in ("prior", "decoder"):  # a model folder as far as the registry looks (the test's loader loads it)
        (tmp_path / "models" / "slow" / part).mkdir(parents=True)
    settings = make_settings(tmp_path, broker_url="redis://127.0.0.1:1/0", lease_s=1.0, batch_images=8)
    db = Database(settings.db_url)
    with db.session() as s:
        user = User(email="u@example.test", role="member")
        s.add(user)
        s.flush()
        job = Job(user_id=user.id, kind="generation", model="slow", params={"prompt": "p", "n": 1, "size": "256x256"})
        s.add(job)
        s.flush()
        job_id = job.id

    def slow_loader(path: Path) -> BatchFakeEngine:
        time.sleep(3.0)  # a model loaded on first use
        return BatchFakeEngine()

    worker = BrokerWorker(settings, engines={"unclip-test": BatchFakeEngine()}, engine_loader=slow_loader)
    t = threading.Thread(target=worker.process, args=(job_id,))
    t.start()
    time.sleep(1.8)
    with db.session() as s:
        assert s.get(Job, job_id).lease_until > now()
    assert JobRunner(db, worker.store, worker.registry, lease_s=1.0).claim(job_id, worker_token()) is None
    t.join(30)
    with db.session() as s:
        assert s.get(Job, job_id).status == "succeeded"
    db.dispose()


def test_the_job_list_pages_like_the_history_and_refuses_unknown_cursors(live: Server) -> None:
    _, key = live.user("member")
    _, other = live.user("member")
    for i in range(3):
        r = httpx.post(
            live.url + "/v1/images/generations",
            json={"prompt": f"cat {i}", "size": "256x256"},
            headers={**H(key), **ASYNC},
        )
        wait_status(live, key, r.json()["id"], "succeeded")
    first = httpx.get(live.url + "/v1/jobs?limit=2", headers=H(key)).json()
    assert len(first["data"]) == 2 and first["has_more"]
    rest = httpx.get(f"{live.url}/v1/jobs?limit=2&after={first['last_id']}", headers=H(key)).json()
    assert len(rest["data"]) == 1 and not rest["has_more"]
    assert len({j["id"] for j in first["data"] + rest["data"]}) == 3  # every job once
    for url in (
        f"/v1/jobs?after={first['last_id']}",  # someone else's cursor
        "/v1/images?after=img_gone",
    ):
        r = httpx.get(live.url + url, headers=H(other))
        assert (r.status_code, r.json()["error"]["param"]) == (400, "after"), r.text
    r = httpx.get(live.url + "/v1/jobs?status=done", headers=H(key))
    assert (r.status_code, r.json()["error"]["param"]) == (400, "status")


def test_guidance_zero_is_a_setting_and_a_negative_prompt_needs_guidance(live: Server) -> None:
    """At guidance 1 or below no guidance is applied: a negative prompt would be ignored (refused, before the
    charge); guidance 0 is shown with the image, as any other setting (it was dropped as a falsy value)."""
    _, key = live.user("member")
    body = {"prompt": "a cat", "size": "256x256", "guidance": 0.5, "negative_prompt": "blurry"}
    r = httpx.post(live.url + "/v1/images/generations", json=body, headers=H(key))
    assert (r.status_code, r.json()["error"]["param"]) == (400, "negative_prompt"), r.text
    body = {"prompt": "a cat", "size": "256x256", "guidance": 0}
    job = httpx.post(live.url + "/v1/images/generations", json=body, headers={**H(key), **ASYNC}).json()
    job = wait_status(live, key, job["id"], "succeeded")
    image = httpx.get(f"{live.url}/v1/images/{job['image_ids'][0]}", headers=H(key)).json()
    assert image["settings"]["guidance"] == 0


def _submit_async(srv: Server, key: str) -> httpx.Response:
    return httpx.post(
        srv.url + "/v1/images/generations", json={"prompt": "x", "size": "256x256"}, headers={**H(key), **ASYNC}
    )


def test_a_cancelled_queued_job_frees_its_queue_place_at_once(tmp_path: Path) -> None:
    """A queued job cancelled (by its user, or by its request's timeout) kept its place until a worker took
    its id off the queue, so the server answered 503 queue_full with places free behind one long job."""
    engine = FakeEngine()
    engine.gate = threading.Event()
    srv = start_server(make_settings(tmp_path, queue_size=2), engine=engine)
    try:
        _, key = srv.user("member")
        running, queued = (_submit_async(srv, key).json()["id"] for _ in range(2))
        wait_status(srv, key, running, "running")
        assert httpx.post(f"{srv.url}/v1/jobs/{queued}/cancel", headers=H(key)).json()["status"] == "cancelled"
        assert srv.sv.jobs.depth() == 1
        third = _submit_async(srv, key)
        assert third.status_code == 202, third.text
        engine.gate.set()
        for job_id in (running, third.json()["id"]):
            wait_status(srv, key, job_id, "succeeded")
        _until(lambda: srv.sv.jobs.depth() == 0)
    finally:
        engine.gate.set()
        srv.stop()


def _db_error() -> Exception:
    from sqlalchemy.exc import OperationalError

    return OperationalError("UPDATE jobs …", {}, Exception("database is locked"))


def _flaky_claim(srv: Server, fail_for: set[str], times: int = 1) -> list[str]:
    """Make the runner's claim of each job in `fail_for` raise a database error `times` times; returns the ids
    it failed, once per failure."""
    runner, failed = srv.sv.jobs.runner, []
    claim = runner.claim

    def flaky(job_id: str, token: str):  # type: ignore[no-untyped-def]
        if job_id in fail_for and failed.count(job_id) < times:
            failed.append(job_id)
            raise _db_error()
        return claim(job_id, token)

    runner.claim = flaky
    return failed


def test_a_database_error_while_batching_runs_the_job_alone_and_the_other_later(tmp_path: Path) -> None:
    """An error while J1's pass looked for companions left J1 running and charged with nothing to run it, and
    its request was answered 504 "refunded" with nothing refunded until a restart."""
    batch = BatchFakeEngine()
    batch.gate = threading.Event()
    srv = start_server(make_settings(tmp_path, batch_images=8, request_timeout_s=20), engine=batch)
    try:
        uid, key = srv.user("member")
        body = {"prompt": "first", "size": "256x256"}
        first = httpx.post(srv.url + "/v1/images/generations", json=body, headers={**H(key), **ASYNC}).json()["id"]
        wait_status(srv, key, first, "running")
        ids = [
            httpx.post(
                srv.url + "/v1/images/generations", json={**body, "prompt": p}, headers={**H(key), **ASYNC}
            ).json()["id"]
            for p in ("J1", "J2")
        ]
        failed = _flaky_claim(srv, {ids[1]})
        batch.gate.set()
        for job_id in (first, *ids):
            wait_status(srv, key, job_id, "succeeded")
        assert failed == [ids[1]]  # J2's claim into J1's pass failed: J1 ran alone, J2 on its own turn
        balance, ledger = _books(srv, uid)
        assert [r for r, _ in ledger].count("refund") == 0 and sum(d for _, d in ledger) == balance
        _until(lambda: srv.sv.jobs.depth() == 0)
    finally:
        batch.gate.set()
        srv.stop()


def test_a_job_the_worker_could_not_start_is_tried_again(tmp_path: Path) -> None:
    """A database error as a worker claimed a job left it queued with nothing to run it: its request waited
    for its timeout."""
    engine = FakeEngine()
    engine.gate = threading.Event()
    srv = start_server(make_settings(tmp_path, request_timeout_s=20), engine=engine)
    try:
        _, key = srv.user("member")
        first = _submit_async(srv, key).json()["id"]
        wait_status(srv, key, first, "running")
        second = _submit_async(srv, key).json()["id"]
        failed = _flaky_claim(srv, {second})
        engine.gate.set()
        wait_status(srv, key, second, "succeeded")
        assert failed == [second]
        _until(lambda: srv.sv.jobs.depth() == 0)
    finally:
        engine.gate.set()
        srv.stop()


def test_a_job_is_tried_again_for_as_long_as_the_database_is_away(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """After three failed claims the job was given up: queued and charged with nothing to run it, its place
    in the queue taken, until a restart."""
    from unclip.service import jobs

    monkeypatch.setattr(jobs, "backoff", lambda tries: 0.05)
    srv = start_server(make_settings(tmp_path, request_timeout_s=20))
    try:
        _, key = srv.user("member")
        job_id = _submit_async(srv, key).json()["id"]  # claimed at once: it may fail its first claim or not
        second = _submit_async(srv, key).json()["id"]
        wait_status(srv, key, job_id, "succeeded")
        failed = _flaky_claim(srv, {second}, times=6)
        third = _submit_async(srv, key).json()["id"]  # not held up by the job that waits to be tried again
        wait_status(srv, key, third, "succeeded")
        wait_status(srv, key, second, "succeeded")
        assert failed.count(second) in (0, 6)  # 0: it had run before the claim was made to fail
        _until(lambda: srv.sv.jobs.depth() == 0)
    finally:
        srv.stop()


def test_an_outcome_the_database_could_not_take_is_recorded_when_it_can(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A database error as a finished job was recorded left its row running and charged while its request
    was answered 500 "failed" (an SDK retries that, and pays again)."""
    from unclip.service import jobs

    monkeypatch.setattr(jobs, "backoff", lambda tries: 0.05)
    srv = start_server(make_settings(tmp_path, request_timeout_s=20))
    runner, fails = srv.sv.jobs.runner, []
    complete = runner.complete

    def flaky(*args, **kwargs):  # type: ignore[no-untyped-def]
        if len(fails) < 3:
            fails.append(1)
            raise _db_error()
        return complete(*args, **kwargs)

    runner.complete = flaky
    try:
        uid, key = srv.user("member")
        r = httpx.post(srv.url + "/v1/images/generations", json={"prompt": "x", "size": "256x256"}, headers=H(key))
        assert r.status_code == 200 and len(r.json()["data"]) == 1, r.text
        assert len(fails) == 3
        job = httpx.get(srv.url + "/v1/jobs", headers=H(key)).json()["data"][0]
        assert job["status"] == "succeeded"
        balance, ledger = _books(srv, uid)
        assert [r for r, _ in ledger] == ["grant", "charge"] and sum(d for _, d in ledger) == balance
        _until(lambda: srv.sv.jobs.depth() == 0)
    finally:
        srv.stop()


def test_a_job_this_server_lost_is_answered_as_its_row_ends(tmp_path: Path) -> None:
    """An attempt that lost its job (taken over by another process, which records it a moment later) marked
    its handle succeeded, and the waiting request, finding the row still running, was answered 500."""
    srv = start_server(make_settings(tmp_path, request_timeout_s=20))
    runner = srv.sv.jobs.runner
    complete = runner.complete

    def elsewhere(*args, **kwargs):  # type: ignore[no-untyped-def]
        threading.Timer(0.5, complete, args, kwargs).start()  # as the process that took it over would
        return None

    runner.complete = elsewhere
    try:
        _, key = srv.user("member")
        r = httpx.post(srv.url + "/v1/images/generations", json={"prompt": "x", "size": "256x256"}, headers=H(key))
        assert r.status_code == 200 and len(r.json()["data"]) == 1, r.text
    finally:
        srv.stop()


def test_a_job_sent_to_the_broker_is_answered_though_noting_it_sent_failed(tmp_path: Path) -> None:
    """The job was committed, charged and sent, then the note that it was sent failed (the database): the
    request was answered 500 while the job ran, charged, and the SDK's retry paid again."""
    from sqlalchemy.exc import OperationalError

    from unclip.service.db import Database, Job
    from unclip.service.remote import RemoteJobs

    from .test_broker import _one_charged_job

    db = Database(f"sqlite:///{tmp_path / 'db.sqlite'}")
    job_id = _one_charged_job(db)
    sent: list[str] = []
    api = RemoteJobs(db, type("Dispatcher", (), {"send": lambda self, jid: sent.append(jid)})(), redispatch_s=1.0)
    session = db.session

    def gone():  # type: ignore[no-untyped-def]
        db.session = session  # once
        raise OperationalError("UPDATE jobs …", {}, Exception("database is locked"))

    api.reserve()
    db.session = gone  # type: ignore[method-assign]
    assert api.enqueue(job_id).job_id == job_id and sent == [job_id]
    with db.session() as s:
        assert s.get(Job, job_id).dispatched_at is None  # so the sweeper sends it again
    assert api.sweep() == 1 and sent == [job_id, job_id]


def test_outpaints_and_upscales_take_any_shape_and_show_only_what_applies(
    live: Server, trusted: tuple[str, str]
) -> None:
    key = trusted[1]
    r = httpx.post(
        live.url + "/v1/images/outpaints",
        headers=H(key),
        files={"image": ("a.png", png(64), "image/png")},
        data={"prompt": "more", "right": "64", "user": "u1", "safety_identifier": "s1"},
    )
    assert r.status_code == 200, r.text
    wide = httpx.get(r.json()["data"][0]["url"]).content  # an outpaint's canvas: 128x64
    for path, data in (("outpaints", {"prompt": "more", "top": "32"}), ("upscales", {"safety_identifier": "s"})):
        r = httpx.post(f"{live.url}/v1/images/{path}", headers=H(key), files={"image": ("w.png", wide)}, data=data)
        assert r.status_code == 200, (path, r.text)
    r = httpx.post(
        live.url + "/v1/images/blends",
        headers=H(key),
        json={"items": [{"prompt": "a"}, {"prompt": "b"}], "size": "256x256", "user": "u", "safety_identifier": "s"},
    )
    assert r.status_code == 200, r.text
    kinds = {}
    for item in httpx.get(live.url + "/v1/images?limit=10", headers=H(key)).json()["data"]:
        kinds.setdefault(item["kind"], httpx.get(f"{live.url}/v1/images/{item['id']}", headers=H(key)).json())
    assert kinds["upscale"]["settings"] == {}
    assert kinds["outpaint"]["settings"] == {"top": 32}
    assert kinds["blend"]["settings"]["size"] == "256x256"


def _store_held(srv: Server) -> tuple[threading.Event, threading.Event]:
    """Hold the job's images at the store: (entered, release)."""
    store = srv.sv.jobs.runner.store
    put, entered, release = store.put, threading.Event(), threading.Event()

    def held(data: bytes) -> str:
        entered.set()
        release.wait(30)
        return put(data)

    store.put = held
    return entered, release


def test_a_cancel_while_the_images_are_stored_ends_the_job_cancelled_and_refunded(live: Server) -> None:
    _uid, key = live.user("member")
    before = httpx.get(live.url + "/v1/me", headers=H(key)).json()["credits"]
    entered, release = _store_held(live)
    job_id = httpx.post(live.url + "/v1/images/generations", json={"prompt": "x", "size": "256x256"},
                        headers={**H(key), **ASYNC}).json()["id"]  # fmt: skip
    assert entered.wait(10)  # the engine is done; encoding and storing 1024 px images takes seconds
    answer: list[httpx.Response] = []
    asking = threading.Thread(
        target=lambda: answer.append(httpx.post(f"{live.url}/v1/jobs/{job_id}/cancel", headers=H(key), timeout=30))
    )
    asking.start()
    deadline = time.monotonic() + 10
    while live.sv.jobs.handle(job_id) is not None and not live.sv.jobs.handle(job_id).cancel.is_set():
        assert time.monotonic() < deadline
        time.sleep(0.02)
    release.set()
    asking.join(30)
    assert answer[0].status_code == 200 and answer[0].json()["status"] == "cancelled"
    assert wait_status(live, key, job_id, "cancelled")["status"] == "cancelled"
    assert httpx.get(live.url + "/v1/me", headers=H(key)).json()["credits"] == before


def test_a_request_told_cancelled_and_refunded_while_its_images_were_stored_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from unclip.service.routers import deps

    monkeypatch.setattr(deps, "CANCEL_WAIT_S", 0.5)  # storing outlasts the wait: the request is answered first
    srv = start_server(make_settings(tmp_path, request_timeout_s=0.5))
    try:
        _, key = srv.user("member")
        before = httpx.get(srv.url + "/v1/me", headers=H(key)).json()["credits"]
        _entered, release = _store_held(srv)
        threading.Timer(3.0, release.set).start()
        r = httpx.post(srv.url + "/v1/images/generations", json={"prompt": "x", "size": "256x256"},
                       headers=H(key), timeout=30)  # fmt: skip
        assert r.status_code == 504 and "refunded" in r.json()["error"]["message"], r.text
        job_id = httpx.get(srv.url + "/v1/jobs", headers=H(key)).json()["data"][0]["id"]
        assert wait_status(srv, key, job_id, "cancelled")["status"] == "cancelled"
        assert httpx.get(srv.url + "/v1/me", headers=H(key)).json()["credits"] == before
    finally:
        srv.stop()
