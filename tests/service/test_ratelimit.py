"""The rate limiter's buckets and cooldowns, on a fake clock."""

from __future__ import annotations

from unclip.service.ratelimit import RateLimiter


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def test_buckets_and_cooldowns_of_idle_keys_are_forgotten_and_busy_ones_kept() -> None:
    """One bucket per client address (signups, sign-ins) piled up for ever: 2,000 addresses, 2,000 buckets."""
    clock = Clock()
    limiter = RateLimiter(clock)
    for i in range(2000):
        assert limiter.hit(f"session:10.0.{i // 250}.{i % 250}", 10) is None
        assert limiter.cooldown(f"user-{i}", 30) is None
    assert limiter.hit("busy", 2) is None and limiter.hit("busy", 2) is None
    assert limiter.hit("busy", 2) is not None  # empty
    assert limiter.cooldown("throttled", 120) is None
    clock.t += 59.0
    assert limiter.hit("busy", 2) is None  # refilled to ~2 after 59 s: one taken, kept going
    clock.t += 2.0
    assert limiter.hit("other", 10) is None  # a sweep: the idle buckets and spent cooldowns go
    assert set(limiter._buckets) == {"busy", "other"}
    assert set(limiter._cooldowns) == {"throttled"}
    assert limiter.cooldown("throttled", 120) is not None  # still cooling down
    assert limiter.hit("busy", 2) is None and limiter.hit("busy", 2) is not None  # its state was kept


def test_a_turn_given_back_is_the_one_taken_not_a_later_one() -> None:
    clock = Clock()
    limiter = RateLimiter(clock)
    wait, first = limiter.take_turn("u", 60)
    assert wait is None and first is not None
    assert limiter.take_turn("u", 60)[0] is not None  # cooling down
    limiter.give_back("u", first)  # the first request was not taken
    wait, second = limiter.take_turn("u", 60)
    assert wait is None and second is not None
    clock.t += 61
    wait, third = limiter.take_turn("u", 60)  # the second request took longer than the cooldown
    assert wait is None and third is not None
    limiter.give_back("u", second)  # must not hand back the third request's turn
    assert limiter.take_turn("u", 60)[0] is not None
