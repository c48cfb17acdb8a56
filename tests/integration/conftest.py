"""Integration tests run against the real stack that `make test` starts (robolake infra up).

Under `make test` or CI (ROBOLAKE_REQUIRE_STACK=1 or CI=true) a missing stack is a failure that
says why; run by hand without the stack, these tests are skipped with the same reason.
"""

from __future__ import annotations

import os

import pytest

from robolake.settings import Settings


def _stack_required() -> bool:
    return os.environ.get("ROBOLAKE_REQUIRE_STACK") == "1" or os.environ.get("CI", "").lower() == "true"


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/integration" in str(item.fspath):
            item.add_marker(pytest.mark.integration)


@pytest.fixture(scope="session")
def stack() -> Settings:
    """Settings pointing at the running stack; fails (CI) or skips (by hand) when it is down."""
    from infra.process import port_open

    settings = Settings.load(bus=os.environ.get("ROBOLAKE_BUS") or "kafka://127.0.0.1:9092",
                             lake=os.environ.get("ROBOLAKE_LAKE") or "s3://robolake/lake")
    host, port = settings.kafka_bootstrap[0].split(":")
    missing = [name for name, (h, p) in (("Kafka", (host, int(port))), ("MinIO", settings.s3_host_port))
               if not port_open(h, p)]
    if missing:
        reason = (f"{' and '.join(missing)} not reachable ({settings.bus}, {settings.s3_endpoint}); "
                  "start the stack with 'robolake infra up'")
        if _stack_required():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return settings
