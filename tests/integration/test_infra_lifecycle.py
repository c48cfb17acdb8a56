"""`robolake infra up/down/status` on a second, private stack (own ports and state directory)."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from infra.postgres_server import PostgresServer
from tests.integration.conftest import free_ports


def _our_processes(marker: str) -> list[int]:
    pids = []
    for proc in Path("/proc").iterdir():
        if proc.name.isdigit():
            try:
                if marker in (proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"):
                    pids.append(int(proc.name))
            except OSError:
                pass
    return pids


def _listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def private_stack(tmp_path):
    kafka, controller, minio, console, postgres = free_ports(5)
    env = {**os.environ,
           "ROBOLAKE_STACK_DIR": str(tmp_path / "stack"),
           "ROBOLAKE_KAFKA_PORT": str(kafka), "ROBOLAKE_KAFKA_CONTROLLER_PORT": str(controller),
           "ROBOLAKE_S3_ENDPOINT": f"127.0.0.1:{minio}", "ROBOLAKE_MINIO_CONSOLE_PORT": str(console),
           # a catalog on this machine's PostgreSQL: `infra up` starts that server too
           "ROBOLAKE_CATALOG": f"postgresql://robolake@127.0.0.1:{postgres}/lakes"}

    def robolake(*args):
        return subprocess.run([sys.executable, "-m", "robolake.cli", *args], env=env,
                              capture_output=True, text=True, timeout=300)

    yield robolake, env, str(tmp_path / "stack")
    robolake("infra", "down")
    # Run as root, PostgreSQL keeps its cluster outside the stack directory (/var/tmp): not left behind.
    shutil.rmtree(PostgresServer(tmp_path / "stack", postgres).data, ignore_errors=True)


def test_up_is_idempotent_and_down_leaves_nothing_behind(private_stack):
    robolake, env, marker = private_stack
    first = robolake("infra", "up")
    assert first.returncode == 0, first.stderr
    pids = sorted(_our_processes(marker))
    assert len(pids) == 2, f"expected kafka + minio, found {pids}"
    postgres = int(env["ROBOLAKE_CATALOG"].rsplit(":", 1)[1].split("/")[0])
    assert _listening(postgres), "postgres must serve the catalog's port"
    lake = robolake("sql", "--lake", f"file://{marker}/lake", "SELECT 1")
    assert "no lake" in lake.stderr, lake.stderr  # the catalog's database was made; the lake is not yet

    second = robolake("infra", "up")
    assert second.returncode == 0, second.stderr
    assert sorted(_our_processes(marker)) == pids  # no second copy

    status = robolake("infra", "status")
    assert status.returncode == 0
    assert status.stdout.count("healthy") == 3

    down = robolake("infra", "down")
    assert down.returncode == 0 and "stopped postgres, minio, kafka" in down.stdout
    assert _our_processes(marker) == [] and not _listening(postgres)
    assert robolake("infra", "status").returncode == 1  # stopped is not healthy
    assert "nothing was running" in robolake("infra", "down").stdout


def test_port_in_use_is_named_and_nothing_is_started(private_stack):
    robolake, env, marker = private_stack
    port = int(env["ROBOLAKE_S3_ENDPOINT"].rsplit(":", 1)[1])
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", port))
        squatter.listen()
        result = robolake("infra", "up")
    assert result.returncode == 1
    assert f"port {port} is already in use by pid {os.getpid()}" in result.stderr
    assert _our_processes(marker) == []
