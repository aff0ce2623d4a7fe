"""The broker between the API and `unclip worker` processes: Dramatiq on Redis. A message only names a job; the
database holds the job, and every transition is a compare-and-set on its row (see `runner`), so a message that
is lost is sent again and one delivered twice runs the job once."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

QUEUE = "unclip-jobs"
ACTOR = "run_job"
NAMESPACE = "unclip"
# Dramatiq looks for the messages of dead workers (no heartbeat for `heartbeat_s`) on this share of its
# commands, per million; idle consumers poll about once a second, so a dead worker's job comes back within
# seconds of its heartbeat timeout (the API's sweeper is the backstop)
MAINTENANCE_CHANCE = 100_000
TIME_LIMIT_MS = 24 * 3600 * 1000  # jobs end themselves (cancel, request timeout); never kill a thread


class Dispatcher:
    """Sends jobs to the workers and, in a worker, declares the actor that receives them."""

    def __init__(self, url: str, *, heartbeat_s: float = 15.0) -> None:
        import redis
        from dramatiq.brokers.redis import RedisBroker

        # a broker that is down or hung answers within seconds instead of blocking a request
        client = redis.Redis.from_url(
            url, socket_timeout=10, socket_connect_timeout=5, health_check_interval=30
        )
        self.url = url
        self.broker = RedisBroker(
            client=client,
            namespace=NAMESPACE,
            heartbeat_timeout=int(heartbeat_s * 1000),
            maintenance_chance=MAINTENANCE_CHANCE,
        )

    def send(self, job_id: str) -> None:
        """Queue a message for the job. Raises when the broker cannot be reached."""
        from dramatiq import Message

        self.broker.enqueue(
            Message(queue_name=QUEUE, actor_name=ACTOR, args=(job_id,), kwargs={}, options={})
        )

    def declare(self, fn: Callable[[str], None]) -> Any:
        """Make `fn(job_id)` the actor that runs jobs (in `unclip worker`). An exception it raises (the database
        unreachable) is retried with backoff; it handles the engine's own errors itself."""
        import dramatiq

        return dramatiq.actor(
            fn,
            broker=self.broker,
            actor_name=ACTOR,
            queue_name=QUEUE,
            max_retries=20,
            min_backoff=1000,
            max_backoff=30_000,
            time_limit=TIME_LIMIT_MS,
        )

    def ping(self) -> None:
        self.broker.client.ping()

    def wait(self, timeout_s: float) -> None:
        """A broker that is starting or restarting is waited for; one that never answers is a wrong URL or a
        broker that is down, said in words."""
        from redis.exceptions import AuthenticationError, ResponseError

        deadline = time.monotonic() + timeout_s
        while True:
            try:
                self.ping()
                return
            except Exception as exc:
                # a wrong password or database number is said at once: waiting will not fix it
                if isinstance(exc, AuthenticationError | ResponseError) or time.monotonic() > deadline:
                    raise RuntimeError(f"cannot reach the broker at {redact(self.url)}: {exc}") from None
            time.sleep(0.5)

    def close(self) -> None:
        self.broker.close()


def redact(url: str) -> str:
    """A URL without its password, for logs."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        return f"{scheme}://…@{rest.rsplit('@', 1)[1]}"
    return url
