"""Per-key rate limits (token buckets, requests per minute) and per-user cooldowns for repeat offenders."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

IDLE_S = 60.0  # a bucket refills from empty to full in a minute


@dataclass
class _Bucket:
    tokens: float
    updated: float


class RateLimiter:
    def __init__(self, clock: callable = time.monotonic) -> None:  # type: ignore[valid-type]
        self._clock = clock
        self._buckets: dict[str, _Bucket] = {}
        self._cooldowns: dict[str, float] = {}
        self._lock = threading.Lock()
        self._swept = clock()

    def _sweep(self, now: float) -> None:
        """Forget buckets idle for a minute (full again: the same as none) and cooldowns that ran out, at most
        once a minute (the caller holds the lock): one bucket per client address would otherwise pile up."""
        if now - self._swept < IDLE_S:
            return
        self._swept = now
        for key in [k for k, b in self._buckets.items() if now - b.updated >= IDLE_S]:
            del self._buckets[key]
        for user in [u for u, until in self._cooldowns.items() if until <= now]:
            del self._cooldowns[user]

    def hit(self, key: str, per_minute: int) -> float | None:
        """Take one request from `key`'s bucket. None if allowed, else seconds until one is available."""
        if per_minute <= 0:
            return None
        rate = per_minute / 60.0
        now = self._clock()
        with self._lock:
            self._sweep(now)
            b = self._buckets.get(key)
            if b is None:
                b = self._buckets[key] = _Bucket(tokens=float(per_minute), updated=now)
            b.tokens = min(float(per_minute), b.tokens + (now - b.updated) * rate)
            b.updated = now
            if b.tokens >= 1.0:
                b.tokens -= 1.0
                return None
            return (1.0 - b.tokens) / rate

    def status(self, key: str, per_minute: int) -> tuple[int, float]:
        """(whole requests left now, seconds until the bucket is full again) for `key`."""
        if per_minute <= 0:
            return 0, 0.0
        rate = per_minute / 60.0
        now = self._clock()
        with self._lock:
            b = self._buckets.get(key)
            tokens = (
                float(per_minute)
                if b is None
                else min(float(per_minute), b.tokens + (now - b.updated) * rate)
            )
        return int(tokens), (per_minute - tokens) / rate

    def cooldown(self, user_id: str, seconds: float) -> float | None:
        """A throttled user may make one request per `seconds`. None if allowed, else the wait."""
        return self.take_turn(user_id, seconds)[0]

    def take_turn(self, user_id: str, seconds: float) -> tuple[float | None, float | None]:
        """`cooldown`, also returning the turn taken (for `give_back`) when allowed."""
        now = self._clock()
        with self._lock:
            self._sweep(now)
            until = self._cooldowns.get(user_id, 0.0)
            if now < until:
                return until - now, None
            self._cooldowns[user_id] = now + seconds
            return None, now + seconds

    def give_back(self, user_id: str, turn: float) -> None:
        """Undo a turn `take_turn` gave: the request it let through was not taken. A later request's turn stays."""
        with self._lock:
            if self._cooldowns.get(user_id) == turn:
                del self._cooldowns[user_id]
