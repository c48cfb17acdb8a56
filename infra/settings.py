"""One settings object, read from ROBOLAKE_* environment variables and overridden by CLI flags.

The embedded default needs no services: an in-process bus and a lake on the local disk.
`bus=kafka://127.0.0.1:9092` and `lake=s3://robolake/lake` make the same commands use the
real stack; the S3 endpoint and credentials are shared by the MinIO launcher and every client.
"""

from __future__ import annotations

import dataclasses
import math
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from urllib.parse import urlsplit

ENV_PREFIX = "ROBOLAKE_"
VLM_BACKENDS = ("scripted", "gemini", "openai")


class SettingsError(ValueError):
    """A setting has a value we cannot use; the message names the setting and the value."""


def _default_home() -> Path:
    return Path(os.path.expanduser("~/.cache/robolake"))


@dataclass(frozen=True)
class Settings:
    # Where events travel: "memory" (in-process) or "kafka://host:port[,host:port…]".
    bus: str = "memory"
    # Where tables live: "file://<dir>" (relative paths are resolved from the working directory)
    # or "s3://<bucket>/<prefix>" on the S3 endpoint below.
    lake: str = "file://lake"
    # The lake's table catalog, "sqlite:<file>" or "postgresql://user@host:port/database" (writers on
    # many machines; infra/catalogs.py); empty: <lake>/catalog.sqlite for a local lake,
    # <stack_dir>/catalogs/<bucket>/<prefix>/catalog.sqlite for a lake on S3.
    catalog: str = ""
    # Cache for downloads and builds (Kafka jars, MinIO binary) and the infra stack's state.
    home: Path = field(default_factory=_default_home)
    # State of the native infra stack (data, logs, pid files); default <home>/stack.
    stack_dir: Path | None = None
    # S3 endpoint (host:port) and credentials: the MinIO launcher's root user and every client's.
    s3_endpoint: str = "127.0.0.1:9000"
    s3_access_key: str = "robolake"
    s3_secret_key: str = "robolake-secret"
    s3_secure: bool = False
    # Ports of the native stack (loopback only).
    kafka_port: int = 9092
    kafka_controller_port: int = 9093
    minio_console_port: int = 9001
    # A PostgreSQL server for catalogs that `infra up` starts on loopback; 0: none, unless the catalog
    # is a postgresql:// URL on this machine (then its port).
    postgres_port: int = 0
    # Kafka producer compression: lz4 | zstd | gzip | snappy | none (benchmarks/bus_throughput.py).
    kafka_compression: str = "lz4"
    # Partitions per topic when the stack creates topics.
    partitions: int = 4
    # Upper bound of one bus message; long episodes are split into chunks below it.
    max_message_bytes: int = 512 * 1024
    # Seconds a Kafka client waits for a broker that does not answer; a refused connection
    # (nothing listening) fails at once.
    kafka_connect_timeout: float = 15.0
    # Seconds a Kafka consumer may go without polling before the group counts it gone; long work
    # (a rollout worker's decision) keeps polling meanwhile (Consumer.held).
    kafka_max_poll_interval: float = 300.0
    # The experimenter's model (consumers/curriculum): scripted (offline, the default) | gemini | openai.
    # The keys come from the providers' own variables: GOOGLE_API_KEY, OPENAI_API_KEY.
    vlm: str = "scripted"
    vlm_model: str = ""              # empty: the backend's default model
    vlm_base_url: str = ""           # openai: the server's /v1 URL (vLLM, Ollama, llama.cpp); gemini: an override
    vlm_timeout: float = 60.0        # seconds one model call may take before it is retried
    # Bounds of one read-only query (`robolake sql`, the dashboard): seconds, and memory as a size
    # (4GB, 512MiB) or a share of this machine's RAM (25%); past either the query ends.
    sql_timeout_s: float = 60.0
    sql_memory_limit: str = "25%"
    # Tries of one lake commit (a full disk, the object store down) before a sink gives up with the
    # error; the log keeps what was not written (backoff 0.5 s doubling to 30 s: 8 tries ~1 minute).
    lake_commit_attempts: int = 8
    # torch threads of a learner training on the CPU. One: the CPU model is small, and torch's default
    # of one per core ran ~13x slower beside other work on a 2-core machine (benchmarks/README.md).
    torch_threads: int = 1

    def __post_init__(self) -> None:
        _parse_bus(self.bus)
        _parse_lake(self.lake)
        _parse_endpoint(self.s3_endpoint, "s3_endpoint")
        if self.catalog:
            from infra.catalogs import CatalogURLError, check_url

            try:
                check_url(self.catalog)
            except CatalogURLError as exc:
                raise SettingsError(f"catalog: {exc}") from None
        for name in ("kafka_port", "kafka_controller_port", "minio_console_port"):
            port = getattr(self, name)
            if not 0 < port < 65536:
                raise SettingsError(f"{name} must be a TCP port (1-65535), got {port}")
        if not 0 <= self.postgres_port < 65536:
            raise SettingsError(f"postgres_port must be a TCP port (1-65535) or 0 (none), got {self.postgres_port}")
        if self.kafka_compression not in ("lz4", "zstd", "gzip", "snappy", "none"):
            raise SettingsError(f"kafka_compression must be lz4, zstd, gzip, snappy or none, got {self.kafka_compression!r}")
        if self.partitions < 1:
            raise SettingsError(f"partitions must be >= 1, got {self.partitions}")
        if self.max_message_bytes < 4096:
            raise SettingsError(f"max_message_bytes must be >= 4096, got {self.max_message_bytes}")
        if not (math.isfinite(self.kafka_connect_timeout) and self.kafka_connect_timeout > 0):
            raise SettingsError(f"kafka_connect_timeout must be a number of seconds > 0, got {self.kafka_connect_timeout}")
        if not (math.isfinite(self.kafka_max_poll_interval) and self.kafka_max_poll_interval >= 1):
            raise SettingsError(f"kafka_max_poll_interval must be a number of seconds >= 1, got {self.kafka_max_poll_interval}")
        if self.vlm not in VLM_BACKENDS:
            raise SettingsError(f"vlm must be one of {', '.join(VLM_BACKENDS)}, got {self.vlm!r}")
        if not (math.isfinite(self.vlm_timeout) and self.vlm_timeout > 0):
            raise SettingsError(f"vlm_timeout must be a number of seconds > 0, got {self.vlm_timeout}")
        if not (math.isfinite(self.sql_timeout_s) and self.sql_timeout_s > 0):
            raise SettingsError(f"sql_timeout_s must be a number of seconds > 0, got {self.sql_timeout_s}")
        _parse_memory(self.sql_memory_limit)
        if self.lake_commit_attempts < 1:
            raise SettingsError(f"lake_commit_attempts must be >= 1, got {self.lake_commit_attempts}")
        if self.torch_threads < 1:
            raise SettingsError(f"torch_threads must be >= 1, got {self.torch_threads}")
        if len(self.s3_secret_key) < 8:
            raise SettingsError("s3_secret_key must have at least 8 characters (MinIO's rule)")

    @classmethod
    def load(cls, env: dict[str, str] | None = None, **overrides) -> "Settings":
        """Defaults, then ROBOLAKE_<NAME> environment variables, then explicit overrides (flags)."""
        env = os.environ if env is None else env
        values: dict[str, object] = {}
        for f in fields(cls):
            if overrides.get(f.name) is not None:  # the flag wins, even over an unusable variable
                continue
            raw = env.get(ENV_PREFIX + f.name.upper())
            if raw is not None and raw != "":
                values[f.name] = _coerce(f.name, f.type, raw)
        values.update({k: v for k, v in overrides.items() if v is not None})
        for name in ("home", "stack_dir"):
            if name in values:
                values[name] = Path(os.path.expanduser(str(values[name])))
        return cls(**values)

    def replace(self, **changes) -> "Settings":
        return dataclasses.replace(self, **changes)

    # Derived views: parsed once from the URLs above, never stored twice.
    @property
    def kafka_bootstrap(self) -> list[str]:
        """host:port pairs of the Kafka bootstrap servers; empty for the in-process bus."""
        return _parse_bus(self.bus)

    @property
    def lake_root(self) -> str:
        """The lake as a path DuckDB and pyarrow understand: an absolute directory or s3://…"""
        scheme, location = _parse_lake(self.lake)
        if scheme == "s3":
            return f"s3://{location}"
        return str(Path(location).expanduser().resolve())

    @property
    def lake_is_s3(self) -> bool:
        return _parse_lake(self.lake)[0] == "s3"

    @property
    def lake_bucket(self) -> str:
        scheme, location = _parse_lake(self.lake)
        if scheme != "s3":
            raise SettingsError(f"lake {self.lake!r} is not on S3, so it has no bucket")
        return location.split("/", 1)[0]

    @property
    def s3_host_port(self) -> tuple[str, int]:
        return _parse_endpoint(self.s3_endpoint, "s3_endpoint")

    @property
    def sql_memory_bytes(self) -> int:
        """sql_memory_limit in bytes."""
        return _parse_memory(self.sql_memory_limit)

    @property
    def stack_state(self) -> Path:
        """State of the native infra stack: data, logs and pid files of each service."""
        return self.stack_dir or self.home / "stack"


def _coerce(name: str, annotation: str, raw: str):
    kind = annotation if isinstance(annotation, str) else getattr(annotation, "__name__", "")
    try:
        if kind == "int":
            return int(raw)
        if kind == "float":
            return float(raw)
        if kind == "bool":
            if raw.lower() in ("1", "true", "yes", "on"):
                return True
            if raw.lower() in ("0", "false", "no", "off"):
                return False
            raise ValueError(raw)
    except ValueError:
        raise SettingsError(f"{ENV_PREFIX}{name.upper()}={raw!r} is not a valid {kind}") from None
    return raw


def _parse_endpoint(text: str, what: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise SettingsError(f"{what} must look like host:port, got {text!r}")
    return host, int(port)


_MEMORY_UNITS = {"B": 1, "KB": 10**3, "MB": 10**6, "GB": 10**9, "TB": 10**12,
                 "KIB": 2**10, "MIB": 2**20, "GIB": 2**30, "TIB": 2**40}


def _parse_memory(text: str) -> int:
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*(%|[KMGT]i?B|B)\s*", text, re.IGNORECASE)
    if match:
        number, unit = float(match[1]), match[2].upper()
        if unit == "%":
            total = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
            size = int(total * number / 100) if 0 < number <= 100 else 0
        else:
            size = int(number * _MEMORY_UNITS[unit])
        if size >= 2**20:
            return size
    raise SettingsError(f"sql_memory_limit must be a size of at least 1MiB (4GB, 512MiB) or a share of RAM "
                        f"(25%), got {text!r}")


def _parse_bus(url: str) -> list[str]:
    if url == "memory":
        return []
    parts = urlsplit(url)
    if parts.scheme != "kafka" or not parts.netloc or parts.path not in ("", "/"):
        raise SettingsError(f"bus must be 'memory' or 'kafka://host:port[,host:port]', got {url!r}")
    servers = parts.netloc.split(",")
    for server in servers:
        _parse_endpoint(server, f"bus {url!r}: server")
    return servers


def _parse_lake(url: str) -> tuple[str, str]:
    scheme, sep, rest = url.partition("://")
    if not sep or scheme not in ("file", "s3") or not rest.strip("/"):
        raise SettingsError(f"lake must be 'file://<dir>' or 's3://<bucket>/<prefix>', got {url!r}")
    if scheme == "s3":
        bucket = rest.split("/", 1)[0]
        if not re.fullmatch(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]", bucket):
            raise SettingsError(f"lake {url!r}: {bucket!r} is not a valid S3 bucket name")
        return scheme, rest.strip("/")
    return scheme, rest
