import os
import socket
import sys

import pytest

from infra import stack
from infra.process import ServiceError, ServiceProcess, port_free, port_holder


def _sleeper(tmp_path, name="svc"):
    marker = str(tmp_path / f"{name}-marker")
    return ServiceProcess(name, tmp_path, marker), [sys.executable, "-c", "import time; time.sleep(60)", marker]


def test_start_stop_and_pid_file(tmp_path):
    proc, argv = _sleeper(tmp_path)
    pid = proc.start(argv)
    assert proc.running_pid() == pid
    assert proc.stop() is True
    assert proc.running_pid() is None and not proc.pid_file.exists()
    assert proc.stop() is False


@pytest.mark.parametrize("content", ["garbage", "999999999", None])
def test_stale_pid_file_is_removed_not_trusted(tmp_path, content):
    proc, _ = _sleeper(tmp_path)
    # None: a live pid that is not ours (this test process) must never be signalled.
    proc.pid_file.write_text(content if content is not None else str(os.getpid()))
    assert proc.running_pid() is None
    assert not proc.pid_file.exists()
    assert proc.stop() is False  # and we are still alive


def test_port_holder_names_the_listener():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        assert not port_free("127.0.0.1", port)
        assert port_holder(port).startswith(f"pid {os.getpid()} ")
    assert port_free("127.0.0.1", port)


class _FakeService:
    """A stand-in for Kafka/MinIO: a real child process whose health we control."""

    def __init__(self, tmp_path, name, healthy, argv=None):
        self.name, self._healthy, self.ports, self.endpoint = name, healthy, [], name
        self.process, default_argv = _sleeper(tmp_path, name)
        self._argv = argv or default_argv

    def argv(self):
        return self._argv

    def env(self):
        return {}

    def healthy(self):
        return self._healthy


def test_failed_up_stops_what_it_started(tmp_path, monkeypatch):
    first = _FakeService(tmp_path, "first", healthy=True)
    crashing = _FakeService(tmp_path, "second", healthy=False,
                            argv=[sys.executable, "-c", "print('bad config'); raise SystemExit(3)"])
    monkeypatch.setattr(stack, "services", lambda settings: [first, crashing])
    with pytest.raises(ServiceError, match="second exited during start-up(.|\n)*bad config"):
        stack.up(settings=None, timeout_s=20)
    assert first.process.running_pid() is None  # rolled back
    assert not first.process.pid_file.exists()
