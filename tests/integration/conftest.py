"""Integration tests run against the real stack that `make test` starts (robolake infra up).

Under `make test` or CI (ROBOLAKE_REQUIRE_STACK=1 or CI=true) a missing stack is a failure that
says why; run by hand without the stack, these tests are skipped with the same reason.
"""

from __future__ import annotations

import os
import socket

import pytest

from infra.kafka_server import KafkaServer
from infra.process import wait_until
from infra.settings import Settings


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


def free_ports(n: int) -> list[int]:
    sockets = [socket.socket() for _ in range(n)]
    for s in sockets:
        s.bind(("127.0.0.1", 0))
    ports = [s.getsockname()[1] for s in sockets]
    for s in sockets:
        s.close()
    return ports


@pytest.fixture
def private_broker(stack, tmp_path):
    """A broker of our own on free ports, so killing it disturbs no other test."""
    port, controller = free_ports(2)
    server = KafkaServer(stack.home, tmp_path, port, controller, partitions=4)

    def start():
        pid = server.process.start(server.argv(), server.env())
        assert wait_until(server.healthy, 90, interval=0.5), f"broker did not come up, see {server.process.log_file}"
        return pid

    start()
    yield server, start
    server.process.stop()




@pytest.fixture(scope="session")
def postgres(stack) -> str:
    """host:port of the stack's PostgreSQL (`make test` starts one; ROBOLAKE_TEST_POSTGRES names it)."""
    from infra.process import port_open

    where = os.environ.get("ROBOLAKE_TEST_POSTGRES", "127.0.0.1:15432")
    host, port = where.rsplit(":", 1)
    if not port_open(host, int(port)):
        reason = (f"PostgreSQL not reachable at {where}; start it with "
                  f"'ROBOLAKE_POSTGRES_PORT={port} robolake infra up'")
        if _stack_required():
            pytest.fail(reason, pytrace=False)
        pytest.skip(reason)
    return where


@pytest.fixture
def pg_catalog(postgres):
    """A catalog URL on its own new database of the stack's PostgreSQL, dropped afterwards."""
    import uuid

    from infra.catalogs import PostgresCatalog

    made = []

    def new() -> str:
        url = f"postgresql://robolake@{postgres}/test_{uuid.uuid4().hex[:10]}"
        PostgresCatalog(url).create()
        made.append(url)
        return url

    yield new
    for url in made:
        where = PostgresCatalog(url)
        with where.connect("postgres") as con:
            con.execute(f'DROP DATABASE IF EXISTS "{where.database}" WITH (FORCE)')
