"""A bounded load test on loopback: a real deployment (redis-server, `unclip serve --broker`, N `unclip worker`
processes; or the embedded single process) under an open-loop request rate above what it can serve. Reports
the rate held, latency percentiles, the 429/503 answers, anything else (there must be nothing else), memory, and
that every accepted job ended once with the books balanced.

    .venv/bin/python bench/load_test.py --workers 1,2 --rate 12 --seconds 60          # the tiny model
    .venv/bin/python bench/load_test.py --model models/unclip-emoji --rate 2 --seconds 120
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from unclip.evaluation.load import LoadReport, run_load

ADMIN_KEY = "sk-unclip-loadtest-admin-key-000000000000"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_for(check, what: str, timeout: float = 180.0) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not come up")
        time.sleep(0.2)


def up(url: str) -> bool:
    try:
        return httpx.get(url, timeout=2).status_code < 500
    except httpx.HTTPError:
        return False


def deploy_and_load(args: argparse.Namespace, workers: int, root: Path) -> tuple[LoadReport, dict]:
    """workers 0: the embedded single process; otherwise a broker and that many worker processes."""
    root.mkdir(parents=True)
    unclip = [sys.executable, "-m", "unclip"]
    env = {
        **os.environ,
        "UNCLIP_ADMIN_KEY": ADMIN_KEY,
        "UNCLIP_QUEUE_SIZE": str(args.queue_size),
        "UNCLIP_RATE_LIMITS": json.dumps({"admin": 100_000, "trusted": 100_000}),
        "UNCLIP_BATCH_IMAGES": str(args.batch_images),
        "OMP_WAIT_POLICY": "PASSIVE",
    }
    procs: dict[str, subprocess.Popen[bytes]] = {}
    redis = None
    try:
        if workers:
            rport = free_port()
            redis = subprocess.Popen(
                [
                    "redis-server",
                    "--port",
                    str(rport),
                    "--bind",
                    "127.0.0.1",
                    "--save",
                    "",
                    "--appendonly",
                    "no",
                ],
                stdout=subprocess.DEVNULL,
                cwd=root,
            )
            env["UNCLIP_BROKER_URL"] = f"redis://127.0.0.1:{rport}/0"
        port = free_port()
        common = ["--model", str(args.model), "--data-dir", str(root)]
        with (root / "api.log").open("wb") as log:
            procs["api"] = subprocess.Popen(
                [*unclip, "serve", "--port", str(port), *common],
                env=env,
                stdout=log,
                stderr=subprocess.STDOUT,
            )
        base = f"http://127.0.0.1:{port}"
        wait_for(lambda: up(base + "/v1/models"), "the API")
        for i in range(workers):
            log_path = root / f"worker-{i}.log"
            with log_path.open("wb") as log:
                procs[f"worker-{i}"] = subprocess.Popen(
                    [*unclip, "worker", *common], env=env, stdout=log, stderr=subprocess.STDOUT
                )
            wait_for(lambda p=log_path: b"worker ready" in p.read_bytes(), f"worker {i}")
        headers = {"Authorization": f"Bearer {ADMIN_KEY}"}
        keys = []
        for i, role in enumerate(["trusted"] * args.clients + ["member"]):
            r = httpx.post(
                base + "/v1/admin/users",
                json={"email": f"load{i}@example.test", "role": role},
                headers=headers,
            )
            r.raise_for_status()
            keys.append(r.json()["api_key"])
        per_client = args.rate / args.clients
        clients = [(k, per_client) for k in keys[:-1]] + [(keys[-1], 2.0)]  # a member above its 30/min
        body = {"prompt": "a red apple", "size": "256x256", "n": 1}
        run_load(base + "/v1/images/generations", clients[:1], body, 3.0)  # warm-up, not reported
        report = run_load(
            base + "/v1/images/generations",
            clients,
            body,
            args.seconds,
            memory_of={name: p.pid for name, p in procs.items()},
        )
        books = settle(root)
        return report, books
    finally:
        for p in procs.values():
            p.terminate()
        for p in procs.values():
            try:
                p.wait(30)
            except subprocess.TimeoutExpired:
                p.kill()
        if redis is not None:
            redis.kill()
            redis.wait()


def settle(root: Path, timeout: float = 300.0) -> dict:
    """Wait until no job is queued or running, then check the books: per user, balance == ledger; each succeeded
    job has exactly its result's images and one charge; each failed or cancelled job a charge and a refund."""
    db = sqlite3.connect(root / "unclip.db")
    deadline = time.monotonic() + timeout
    while db.execute("SELECT count(*) FROM jobs WHERE status IN ('queued','running')").fetchone()[0]:
        if time.monotonic() > deadline:
            raise RuntimeError("jobs never finished")
        time.sleep(0.5)
    statuses = dict(db.execute("SELECT status, count(*) FROM jobs GROUP BY status").fetchall())
    bad_users = db.execute(
        "SELECT u.id FROM users u LEFT JOIN credit_ledger c ON c.user_id = u.id "
        "GROUP BY u.id HAVING u.credits != coalesce(sum(c.delta), 0)"
    ).fetchall()
    bad_jobs = 0
    for job_id, status, result in db.execute("SELECT id, status, result FROM jobs"):
        reasons = sorted(
            r for (r,) in db.execute("SELECT reason FROM credit_ledger WHERE job_id = ?", (job_id,))
        )
        images = sorted(i for (i,) in db.execute("SELECT id FROM images WHERE job_id = ?", (job_id,)))
        if status == "succeeded":
            ok = reasons == ["charge"] and images == sorted(json.loads(result)["images"])
        else:
            ok = reasons == ["charge", "refund"] and not images
        bad_jobs += not ok
    return {"jobs": statuses, "unbalanced_users": len(bad_users), "jobs_not_settled_once": bad_jobs}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--model", default="tiny", help="model folder, or 'tiny' (random weights: the server alone)"
    )
    ap.add_argument("--workers", default="1,2", help="worker counts to run; 0 is the embedded single process")
    ap.add_argument(
        "--rate", type=float, default=12.0, help="requests per second offered by the trusted users"
    )
    ap.add_argument("--clients", type=int, default=6, help="trusted users sharing that rate")
    ap.add_argument("--seconds", type=float, default=60.0)
    ap.add_argument("--queue-size", type=int, default=16)
    ap.add_argument("--batch-images", type=int, default=8)
    ap.add_argument("--json", type=Path, help="also write the figures here")
    args = ap.parse_args()
    if shutil.which("redis-server") is None:
        sys.exit("needs redis-server (apt-get install redis-server)")
    with tempfile.TemporaryDirectory(prefix="unclip-load-") as tmp:
        if args.model == "tiny":
            from unclip.models.tiny import make_tiny_model

            args.model = make_tiny_model(Path(tmp) / "tiny")
        results = {}
        for w in (int(x) for x in args.workers.split(",")):
            report, books = deploy_and_load(args, w, Path(tmp) / f"w{w}")
            results[w] = {**report.summary(), "books": books}
            print(json.dumps({"workers": w, **results[w]}), flush=True)
    print(table(results, args))
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


def table(results: dict, args: argparse.Namespace) -> str:
    rows = [
        "| workers | offered req/s | held req/s (200) | p50 / p95 / p99 s | 503 queue full | 429 rate limit | "
        "other errors | worker RSS MiB (start → end, max) | API RSS MiB (start → end) | books |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for w, r in results.items():
        mem = r["memory_mb"]
        ws = [v for k, v in mem.items() if k.startswith("worker")]
        wtxt = "; ".join(f"{v['start']} → {v['end']}, {v['max']}" for v in ws) or "—"
        api = mem.get("api", {})
        b = r["books"]
        ok = "balanced" if not b["unbalanced_users"] and not b["jobs_not_settled_once"] else f"{b} !"
        rows.append(
            f"| {w or 'embedded'} | {r['offered_rps']:.1f} | {r['held_rps']:.2f} | {r['p50_s']} / {r['p95_s']} / "
            f"{r['p99_s']} | {r['queue_full_503']} | {r['rate_limited_429']} | {r['unexpected']} | {wtxt} | "
            f"{api.get('start')} → {api.get('end')} | {ok} |"
        )
    return "\n".join(rows)


if __name__ == "__main__":
    main()
