"""The dashboard against hostile clients: a foreign Host header (DNS rebinding), a crafted cursor,
and idle half-open connections; each gets an answer, and none holds a thread for ever."""

from __future__ import annotations

import base64
import http.client
import json
import socket
import threading
import time

import pytest

from tests.unit.test_report import EXPERIMENT, lake  # noqa: F401  (the fixture)


@pytest.fixture
def dashboard(lake, request):  # noqa: F811
    """The port of a dashboard on the lake; `max_connections` from the test's parameter (default 64)."""
    from robolake.report.dashboard import serve

    settings, _ = lake
    server = serve(settings, port=0, idle_timeout_s=0.5, max_connections=getattr(request, "param", 64))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _get(port: int, path: str, host: str | None = None) -> tuple[int, dict | bytes]:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        connection.putrequest("GET", path, skip_host=True)
        connection.putheader("Host", f"127.0.0.1:{port}" if host is None else host)
        connection.endheaders()
        response = connection.getresponse()
        body = response.read()
        return response.status, json.loads(body) if response.getheader("Content-Type") == "application/json" else body
    finally:
        connection.close()


def test_only_requests_naming_this_loopback_server_are_answered(dashboard):
    port = dashboard
    for host in (f"127.0.0.1:{port}", f"localhost:{port}", f"LOCALHOST:{port}", f"[::1]:{port}"):
        assert _get(port, "/api/experiments", host)[0] == 200, host
    for host in (f"attacker.example:{port}", "127.0.0.1", f"127.0.0.1:{port + 1}", ""):
        status, body = _get(port, "/api/experiments", host)
        assert status == 403 and "answers only to" in body["error"], host


def test_a_crafted_cursor_is_a_bad_request_with_a_message(dashboard):
    for seen in ({"log/topic/0": 10**30}, {"log/topic/0": -(2**64)}, {"log/topic/0": True}, [1]):
        cursor = base64.urlsafe_b64encode(json.dumps(seen).encode()).decode()
        status, body = _get(dashboard, f"/api/timeline?experiment={EXPERIMENT}&cursor={cursor}")
        assert status == 400 and "not a timeline cursor" in body["error"], seen


@pytest.mark.parametrize("dashboard", [2], indirect=True)
def test_idle_connections_time_out_and_connections_beyond_the_bound_are_refused_at_once(dashboard):
    port = dashboard
    idle = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
    time.sleep(0.1)  # both accepted, each holding a slot
    extra = socket.create_connection(("127.0.0.1", port), timeout=10)
    assert extra.recv(100).startswith(b"HTTP/1.1 503"), "a connection beyond the bound is refused, not queued"
    extra.close()
    started = time.monotonic()
    for connection in idle:
        assert connection.recv(100) == b"", "the server closes an idle connection"
        connection.close()
    assert time.monotonic() - started < 5
    deadline = time.monotonic() + 5  # the slots are released as the handler threads end
    while _get(port, "/api/experiments")[0] == 503 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _get(port, "/api/experiments")[0] == 200


def test_a_client_gone_before_its_reply_prints_no_traceback(capsys):
    """Clients that hang up early (a closed tab, a scanner) must not flood stderr with tracebacks;
    other errors still print."""
    from http.server import BaseHTTPRequestHandler

    from robolake.report.dashboard import _Server

    server = _Server(("127.0.0.1", 0), BaseHTTPRequestHandler, max_connections=1)
    try:
        for error in (BrokenPipeError(32, "Broken pipe"), ConnectionResetError(104, "reset")):
            try:
                raise error
            except ConnectionError:
                server.handle_error(None, ("127.0.0.1", 1))
        assert "Traceback" not in capsys.readouterr().err
        try:
            raise RuntimeError("a real bug")
        except RuntimeError:
            server.handle_error(None, ("127.0.0.1", 1))
        assert "a real bug" in capsys.readouterr().err
    finally:
        server.server_close()
