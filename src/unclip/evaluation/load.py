"""The server under load: an open-loop request generator (requests start on a fixed schedule, whatever the
answers, as independent users send them) and the memory of the server's processes, sampled while it runs."""

from __future__ import annotations

import asyncio
import threading
import time
from dataclasses import dataclass, field
from typing import Any


@dataclass
class Answer:
    started: float  # seconds since the load began
    status: int  # 0: no answer (connection refused or reset, client timeout)
    seconds: float
    code: str = ""  # the error body's code
    images: int = 0


@dataclass
class LoadReport:
    rate: float  # offered requests per second
    duration: float
    answers: list[Answer] = field(default_factory=list)
    memory_mb: dict[str, list[tuple[float, float]]] = field(default_factory=dict)  # name → (t, RSS MiB)

    def count(self, status: int) -> int:
        return sum(a.status == status for a in self.answers)

    @property
    def unexpected(self) -> list[Answer]:
        """Answers a bounded server must never give under load: 5xx other than 503, or no answer at all."""
        return [a for a in self.answers if a.status == 0 or (a.status >= 500 and a.status != 503)]

    def held(self) -> float:
        """Images requests answered 200 per second over the load's duration."""
        return self.count(200) / self.duration

    def latency(self, q: float) -> float:
        ok = sorted(a.seconds for a in self.answers if a.status == 200)
        return ok[min(len(ok) - 1, int(q * len(ok)))] if ok else float("nan")

    def growth_mb(self, name: str) -> float:
        """RSS at the end minus RSS a third of the way in (after warm-up): what the load leaves behind."""
        samples = self.memory_mb.get(name, [])
        if len(samples) < 3:
            return 0.0
        return samples[-1][1] - samples[len(samples) // 3][1]

    def summary(self) -> dict[str, Any]:
        return {
            "offered_rps": self.rate,
            "seconds": self.duration,
            "requests": len(self.answers),
            "ok": self.count(200),
            "queue_full_503": self.count(503),
            "rate_limited_429": self.count(429),
            "unexpected": len(self.unexpected),
            "held_rps": round(self.held(), 2),
            "p50_s": round(self.latency(0.50), 2),
            "p95_s": round(self.latency(0.95), 2),
            "p99_s": round(self.latency(0.99), 2),
            "memory_mb": {
                name: {
                    "start": round(s[0][1]),
                    "max": round(max(v for _, v in s)),
                    "end": round(s[-1][1]),
                    "growth": round(self.growth_mb(name)),
                }
                for name, s in self.memory_mb.items()
                if s
            },
        }


def rss_mb(pid: int) -> float | None:
    """A process's resident memory in MiB (Linux), None once it is gone."""
    try:
        with open(f"/proc/{pid}/status") as fh:
            for line in fh:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


class MemorySampler(threading.Thread):
    def __init__(self, pids: dict[str, int], every_s: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.pids, self.every_s = pids, every_s
        self.samples: dict[str, list[tuple[float, float]]] = {name: [] for name in pids}
        self.halt = threading.Event()
        self.t0 = time.monotonic()

    def run(self) -> None:
        while not self.halt.is_set():
            for name, pid in self.pids.items():
                mb = rss_mb(pid)
                if mb is not None:
                    self.samples[name].append((time.monotonic() - self.t0, mb))
            self.halt.wait(self.every_s)


def run_load(
    url: str,
    clients: list[tuple[str, float]],
    body: dict[str, Any],
    duration: float,
    *,
    memory_of: dict[str, int] | None = None,
    timeout: float = 300.0,
) -> LoadReport:
    """POST `body` to `url` for `duration` seconds, each (API key, requests per second) of `clients` on its own
    fixed schedule; every request waits for its answer (the images, or an error). Returns every answer and, for
    `memory_of` (name → pid), the processes' memory over the run."""
    import httpx

    report = LoadReport(rate=sum(r for _, r in clients), duration=duration)
    sampler = MemorySampler(memory_of or {})
    sampler.start()

    async def one(client: httpx.AsyncClient, key: str, t0: float) -> None:
        started = time.monotonic()
        try:
            r = await client.post(url, json=body, headers={"Authorization": f"Bearer {key}"})
        except httpx.HTTPError:
            report.answers.append(Answer(started - t0, 0, time.monotonic() - started))
            return
        code, images = "", 0
        try:
            data = r.json()
            images = len(data.get("data") or []) if r.status_code == 200 else 0
            code = str(((data.get("error") or {}).get("code")) or "") if r.status_code != 200 else ""
        except ValueError:
            code = "not_json"
        report.answers.append(Answer(started - t0, r.status_code, time.monotonic() - started, code, images))

    async def schedule(client: httpx.AsyncClient, key: str, rate: float, t0: float) -> list[asyncio.Task]:
        tasks, i = [], 0
        while (due := t0 + i / rate) < t0 + duration:
            await asyncio.sleep(max(0.0, due - time.monotonic()))
            tasks.append(asyncio.create_task(one(client, key, t0)))
            i += 1
        return tasks

    async def main() -> None:
        limits = httpx.Limits(max_connections=1000, max_keepalive_connections=100)
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
            t0 = time.monotonic()
            groups = await asyncio.gather(*(schedule(client, k, r, t0) for k, r in clients if r > 0))
            await asyncio.gather(*(t for g in groups for t in g))

    try:
        asyncio.run(main())
    finally:
        sampler.halt.set()
        sampler.join()
    report.memory_mb = sampler.samples
    return report
