"""A MinIO server on loopback, built from source with `go install` (MinIO's own source install).

Upstream stopped publishing the community edition in Feb 2026 and the module proxy serves its
last commit as a pseudo-version, which we pin. Everything else in robolake speaks plain S3, so
any S3-compatible store works by configuration.
"""

from __future__ import annotations

import logging
import os
import shutil
import subprocess
import time
import urllib.request
from pathlib import Path

from infra.process import ServiceError, ServiceProcess

log = logging.getLogger(__name__)

MINIO_MODULE = "github.com/minio/minio"
MINIO_VERSION = "v0.0.0-20260212201848-7aac2a2c5b7c"


def install(home: Path) -> Path:
    """The minio binary for MINIO_VERSION, built once into <home>/minio-<version>/."""
    bin_dir = home / f"minio-{MINIO_VERSION}"
    binary = bin_dir / "minio"
    if binary.exists():
        return binary
    if shutil.which("go") is None:
        raise ServiceError("MinIO is built from source and needs Go >= 1.24 on PATH; 'go' was not found")
    log.info("building MinIO %s from source with go install (first time only, a few minutes)…", MINIO_VERSION)
    started = time.monotonic()
    env = {
        **os.environ,
        "GOBIN": str(bin_dir),
        "GOPATH": str(home / "go"),           # module and build caches stay in our cache
        "GOCACHE": str(home / "go" / "build-cache"),
        "GOFLAGS": "-modcacherw",             # so the cache can be deleted without chmod
        "CGO_ENABLED": "0",
    }
    result = subprocess.run(["go", "install", f"{MINIO_MODULE}@{MINIO_VERSION}"],
                            capture_output=True, text=True, env=env)
    if result.returncode != 0 or not binary.exists():
        raise ServiceError(f"go install {MINIO_MODULE}@{MINIO_VERSION} failed:\n{result.stderr[-2000:]}")
    log.info("MinIO built in %.0fs: %s", time.monotonic() - started, binary)
    return binary


class MinioServer:
    name = "minio"

    def __init__(self, home: Path, state_dir: Path, port: int, console_port: int,
                 access_key: str, secret_key: str):
        self.home, self.port, self.console_port = home, port, console_port
        self.access_key, self.secret_key = access_key, secret_key
        self.dir = state_dir / self.name
        self.data = self.dir / "data"
        self.process = ServiceProcess(self.name, self.dir, marker=str(self.data))

    @property
    def ports(self) -> list[int]:
        return [self.port, self.console_port]

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port} (console http://127.0.0.1:{self.console_port})"

    def argv(self) -> list[str]:
        binary = install(self.home)
        self.data.mkdir(parents=True, exist_ok=True)
        return [str(binary), "server", str(self.data), "--quiet",
                "--address", f"127.0.0.1:{self.port}",
                "--console-address", f"127.0.0.1:{self.console_port}"]

    def env(self) -> dict[str, str]:
        return {"MINIO_ROOT_USER": self.access_key, "MINIO_ROOT_PASSWORD": self.secret_key,
                "MINIO_UPDATE": "off", "MINIO_BROWSER_REDIRECT": "off"}

    def healthy(self) -> bool:
        url = f"http://127.0.0.1:{self.port}/minio/health/ready"
        try:
            with urllib.request.urlopen(url, timeout=2) as response:
                return response.status == 200
        except OSError:
            return False
