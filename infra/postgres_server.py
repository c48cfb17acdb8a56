"""A PostgreSQL server on loopback for the lake's catalog: Debian's `postgresql` binaries, a cluster
initialised into the stack's state directory, trust authentication on 127.0.0.1 only.

PostgreSQL refuses to run as root. Run as root, the server runs as the `postgres` user, and its
cluster lives where that user can write (/var/tmp/robolake-postgres/<stack>), since the stack's
directory under root's home is closed to it; a stack directory removed and made anew gets a new
cluster.
"""

from __future__ import annotations

import glob
import hashlib
import logging
import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path

from infra.process import ServiceError, ServiceProcess

log = logging.getLogger(__name__)

USER = "robolake"        # the cluster's superuser; every client on loopback is trusted
DATABASE = "robolake"    # the default catalog database, created by `infra up`


def binaries() -> Path:
    """The directory of `initdb` and `postgres` (Debian keeps them off PATH, per major version)."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(p.split("/")[-3]))
    initdb = found[-1] if found else shutil.which("initdb")
    if not initdb:
        raise ServiceError("PostgreSQL's server binaries (initdb, postgres) were not found: install Debian's "
                           "postgresql package (apt-get install postgresql)")
    return Path(initdb).parent


class PostgresServer:
    name = "postgres"

    def __init__(self, state_dir: Path, port: int):
        self.port = port
        self.dir = state_dir / self.name
        self.as_root = os.geteuid() == 0
        if self.as_root:
            stack = hashlib.sha256(str(state_dir.resolve()).encode()).hexdigest()[:12]
            self.data = Path("/var/tmp/robolake-postgres") / stack
        else:
            self.data = self.dir / "data"
        # SIGINT: PostgreSQL's fast shutdown (SIGTERM would wait for every client to leave).
        self.process = ServiceProcess(self.name, self.dir, marker=str(self.data),
                                      user="postgres" if self.as_root else None, stop_signal=signal.SIGINT)

    @property
    def ports(self) -> list[int]:
        return [self.port]

    @property
    def endpoint(self) -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{DATABASE}"

    def argv(self) -> list[str]:
        bin_dir = binaries()
        self._initdb(bin_dir)
        return [str(bin_dir / "postgres"), "-D", str(self.data), "-p", str(self.port), "-k", str(self.data),
                "-c", "listen_addresses=127.0.0.1", "-c", "max_connections=200"]

    def env(self) -> dict[str, str]:
        return {"LC_ALL": "C.UTF-8"}

    def healthy(self) -> bool:
        try:
            import psycopg
        except ImportError:
            return False
        try:
            with psycopg.connect(f"host=127.0.0.1 port={self.port} user={USER} dbname=postgres", connect_timeout=2):
                return True
        except psycopg.Error:
            return False

    def _initdb(self, bin_dir: Path) -> None:
        marker = self.dir / "initialised"
        if marker.exists() and (self.data / "PG_VERSION").exists():
            return
        shutil.rmtree(self.data, ignore_errors=True)  # a cluster of a stack directory removed since
        self.data.mkdir(parents=True)
        self.dir.mkdir(parents=True, exist_ok=True)
        user = {}
        if self.as_root:
            owner = pwd.getpwnam("postgres")
            for path in (self.data.parent, self.data):
                os.chown(path, owner.pw_uid, owner.pw_gid)
            user = {"user": owner.pw_uid, "group": owner.pw_gid}
        result = subprocess.run([str(bin_dir / "initdb"), "-D", str(self.data), "-A", "trust", "-U", USER,
                                 "-E", "UTF8", "--no-sync"], capture_output=True, text=True,
                                env={**os.environ, **self.env()}, **user)
        if result.returncode != 0:
            raise ServiceError(f"initdb failed:\n{result.stderr[-2000:]}")
        marker.touch()
        log.info("PostgreSQL cluster initialised in %s", self.data)
