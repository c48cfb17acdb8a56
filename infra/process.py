"""Background service processes we start ourselves: pid files we can trust, ports we can name.

A pid file is trusted only if that pid is alive *and* its command line still carries the marker
we started it with (a path of our state directory), so a stale file whose pid was reused by
some other program is detected and removed, never signalled.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)


class ServiceError(RuntimeError):
    """A service could not be installed, started or stopped; the message says why."""


@dataclass(frozen=True)
class ServiceProcess:
    name: str
    state_dir: Path
    marker: str  # a string that appears in the command line of exactly our process
    user: str | None = None  # run as this user (we are root, and the service refuses to be)
    stop_signal: int = signal.SIGTERM  # the signal the service stops promptly on

    @property
    def pid_file(self) -> Path:
        return self.state_dir / f"{self.name}.pid"

    @property
    def log_file(self) -> Path:
        return self.state_dir / f"{self.name}.log"

    def running_pid(self) -> int | None:
        """The pid of our live process, or None; a stale or corrupt pid file is removed."""
        try:
            text = self.pid_file.read_text().strip()
        except FileNotFoundError:
            return None
        pid = int(text) if text.isdigit() else None
        if pid is not None and self.marker in _cmdline(pid):
            return pid
        log.warning("%s: removing stale pid file %s (%r is not our process)", self.name, self.pid_file, text)
        self.pid_file.unlink(missing_ok=True)
        return None

    def start(self, argv: list[str], env: dict[str, str] | None = None) -> int:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        as_user = {}
        if self.user is not None:
            import pwd

            entry = pwd.getpwnam(self.user)
            as_user = {"user": entry.pw_uid, "group": entry.pw_gid, "extra_groups": []}
        with open(self.log_file, "ab") as out:
            proc = subprocess.Popen(
                argv, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                env={**os.environ, **(env or {})}, start_new_session=True,  # survives our exit
                cwd="/" if self.user is not None else None, **as_user,
            )
        # Until exec() completes, /proc shows the parent's command line, and the pid file would
        # look stale to anyone who checks it right away.
        wait_until(lambda: self.marker in _cmdline(proc.pid) or proc.poll() is not None, 10, interval=0.01)
        self.pid_file.write_text(f"{proc.pid}\n")
        log.info("%s: started pid %d, log %s", self.name, proc.pid, self.log_file)
        return proc.pid

    def stop(self, timeout: float = 30.0) -> bool:
        """Stop our process (its stop signal, SIGKILL after `timeout`); True if one was running."""
        pid = self.running_pid()
        if pid is None:
            return False
        os.kill(pid, self.stop_signal)
        if not wait_until(lambda: not _alive(pid), timeout):
            log.warning("%s: pid %d ignored its stop signal for %.0fs, sending SIGKILL", self.name, pid, timeout)
            os.kill(pid, signal.SIGKILL)
            wait_until(lambda: not _alive(pid), 10)
        self.pid_file.unlink(missing_ok=True)
        log.info("%s: stopped pid %d", self.name, pid)
        return True

    def exited_early(self, pid: int) -> str | None:
        """If `pid` died, the tail of its log to explain why; else None."""
        if _alive(pid):
            return None
        self.pid_file.unlink(missing_ok=True)
        tail = self.log_file.read_text(errors="replace").strip().splitlines()[-15:]
        return "\n".join(tail)


def wait_until(predicate, timeout: float, interval: float = 0.25) -> bool:
    deadline = time.monotonic() + timeout
    while True:
        if predicate():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


def port_open(host: str, port: int, timeout: float = 0.5) -> bool:
    try:
        with socket.create_connection((host, port), timeout=timeout):
            return True
    except OSError:
        return False


def port_free(host: str, port: int) -> bool:
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind((host, port))
        except OSError:
            return False
    return True


def port_holder(port: int) -> str | None:
    """'pid N (command)' of the process listening on `port`, when /proc lets us see it."""
    inodes = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            cols = line.split()
            if cols[3] == "0A" and int(cols[1].rsplit(":", 1)[1], 16) == port:  # 0A = LISTEN
                inodes.add(cols[9])
    if not inodes:
        return None
    for proc in Path("/proc").iterdir():
        if not proc.name.isdigit():
            continue
        try:
            for fd in (proc / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:[") and target[8:-1] in inodes:
                    return f"pid {proc.name} ({_cmdline(int(proc.name))[:80]})"
        except OSError:
            continue
    return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    # A zombie child of ours counts as gone.
    try:
        return Path(f"/proc/{pid}/stat").read_text().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def _cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return ""
