"""A bounded schemathesis run against the server's own OpenAPI schema: no generated request ends in a 500."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable

from .conftest import make_settings, start_server

schemathesis = pytest.importorskip("schemathesis")

LIMITS = {"member": 100_000, "trusted": 100_000, "admin": 100_000}
EXAMPLES = 25  # per operation and mode (valid, then invalid requests by the schema)


@pytest.mark.slow
def test_no_generated_request_ends_in_a_500(tmp_path: Path) -> None:
    srv = start_server(make_settings(tmp_path, rate_limits=LIMITS, queue_size=64))
    try:
        _, key = srv.user("admin")
        schema = schemathesis.openapi.from_url(srv.url + "/openapi.json")
        failures: list[str] = []
        operations = [result.ok() for result in schema.get_all_operations()]
        modes = (schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE)
        for operation, mode in ((op, mode) for op in operations for mode in modes):

            @given(case=operation.as_strategy(generation_mode=mode))
            @settings(
                max_examples=EXAMPLES,
                deadline=None,
                derandomize=True,
                database=None,
                suppress_health_check=list(HealthCheck),
            )
            def run(case) -> None:  # type: ignore[no-untyped-def]
                response = case.call(headers={"Authorization": f"Bearer {key}"}, timeout=30)
                if response.status_code >= 500 and response.status_code != 503:
                    failures.append(
                        f"{case.method} {case.formatted_path}: {response.status_code} {response.text[:200]}"
                    )

            try:
                run()
            except Unsatisfiable:
                assert (
                    mode == schemathesis.GenerationMode.NEGATIVE
                )  # nothing to break in a parameterless call
        assert len(operations) > 20
        assert all("422" not in op.definition.raw.get("responses", {}) for op in operations)
        assert not failures, "\n".join(dict.fromkeys(failures))
    finally:
        srv.stop()
