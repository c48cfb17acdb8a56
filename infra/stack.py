"""`robolake infra up|down|status`: the native stack (Kafka KRaft + MinIO, and PostgreSQL for
catalogs when asked) as background processes.

`up` checks every port before starting anything, starts what is not running, waits until each
service answers, then creates the topics and the bucket. If anything fails, the services this
call started are stopped again, so no half-started stack is left behind. `down` stops exactly
the processes whose pid files we wrote (and whose command lines we recognise).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass

from infra.kafka_server import KafkaServer
from infra.minio_server import MinioServer
from infra.postgres_server import PostgresServer
from infra.optional import require
from infra.process import ServiceError, port_free, port_holder, wait_until
from infra.settings import Settings

log = logging.getLogger(__name__)

STARTUP_TIMEOUT_S = 120


@dataclass
class ServiceStatus:
    name: str
    pid: int | None
    healthy: bool
    endpoint: str

    def line(self) -> str:
        state = "healthy" if self.healthy else ("starting/unhealthy" if self.pid else "stopped")
        pid = f"pid {self.pid}" if self.pid else "no process"
        return f"{self.name:<8} {state:<18} {pid:<12} {self.endpoint}"


def postgres_port(settings: Settings) -> int | None:
    """The port of the stack's PostgreSQL: postgres_port, or that of a catalog URL on loopback; None: none."""
    from infra.catalogs import PostgresCatalog, is_postgres

    if settings.postgres_port:
        return settings.postgres_port
    if settings.catalog and is_postgres(settings.catalog):
        where = PostgresCatalog(settings.catalog)
        if where.host in ("127.0.0.1", "localhost", "::1"):
            return where.port
    return None


def stack_catalog(settings: Settings):
    """The catalog the stack's PostgreSQL serves: the settings' own when it is on that server, else
    the server's default database; None without a PostgreSQL."""
    from infra.catalogs import PostgresCatalog, is_postgres
    from infra.postgres_server import DATABASE, USER

    port = postgres_port(settings)
    if not port:
        return None
    if settings.catalog and is_postgres(settings.catalog) and PostgresCatalog(settings.catalog).port == port:
        return PostgresCatalog(settings.catalog)
    return PostgresCatalog(f"postgresql://{USER}@127.0.0.1:{port}/{DATABASE}")


def services(settings: Settings, running_too: bool = False) -> list:
    """The stack's services; with `running_too`, also a PostgreSQL no longer asked for but still running."""
    host, port = settings.s3_host_port
    if host not in ("127.0.0.1", "localhost"):
        raise ServiceError(f"the native stack runs MinIO on loopback, but s3_endpoint is {settings.s3_endpoint}")
    found = [
        KafkaServer(settings.home, settings.stack_state, settings.kafka_port,
                    settings.kafka_controller_port, settings.partitions),
        MinioServer(settings.home, settings.stack_state, port, settings.minio_console_port,
                    settings.s3_access_key, settings.s3_secret_key),
    ]
    postgres = PostgresServer(settings.stack_state, postgres_port(settings) or 0)
    if postgres.port or (running_too and postgres.process.running_pid() is not None):
        found.append(postgres)
    return found


def status(settings: Settings) -> list[ServiceStatus]:
    result = []
    for service in services(settings, running_too=True):
        pid = service.process.running_pid()
        result.append(ServiceStatus(service.name, pid, pid is not None and service.healthy(), service.endpoint))
    return result


def up(settings: Settings, timeout_s: float = STARTUP_TIMEOUT_S) -> list[ServiceStatus]:
    # The health checks and the provisioning talk through the clients: without them every check
    # would only look unhealthy until the timeout.
    for module in ("kafka", "minio"):
        require(module, "infra")
    to_start = [s for s in services(settings) if s.process.running_pid() is None]
    if any(s.name == "postgres" for s in to_start):
        require("psycopg", "postgres")
    for service in to_start:
        for port in service.ports:
            if not port_free("127.0.0.1", port):
                holder = port_holder(port)
                raise ServiceError(f"{service.name} cannot start: port {port} is already in use"
                                   + (f" by {holder}" if holder else ""))
    started = []
    try:
        for service in to_start:
            argv = service.argv()  # installs on first use
            started.append(service)
            pid = service.process.start(argv, service.env())
            _wait_healthy(service, pid, timeout_s)
        _provision(settings)
    except BaseException:
        for service in reversed(started):
            service.process.stop()
        raise
    return status(settings)


def down(settings: Settings) -> list[str]:
    """Stop our services (PostgreSQL, MinIO, then Kafka); returns the names that were running."""
    return [s.name for s in reversed(services(settings, running_too=True)) if s.process.stop()]


def _wait_healthy(service, pid: int, timeout_s: float) -> None:
    failure: list[str] = []

    def ready() -> bool:
        reason = service.process.exited_early(pid)
        if reason is not None:
            failure.append(reason)
            return True
        return service.healthy()

    if not wait_until(ready, timeout_s, interval=0.5):
        raise ServiceError(f"{service.name} did not become healthy within {timeout_s:.0f}s; "
                           f"see {service.process.log_file}")
    if failure:
        raise ServiceError(f"{service.name} exited during start-up; last lines of "
                           f"{service.process.log_file}:\n{failure[0]}")
    log.info("%s healthy at %s", service.name, service.endpoint)


def _provision(settings: Settings) -> None:
    """The topics and the bucket every robolake command expects."""
    from infra.object_store import ensure_bucket
    from infra.topics import ensure_topics
    from schemas import topics

    ensure_topics([f"127.0.0.1:{settings.kafka_port}"], list(topics.ALL), settings.partitions)
    bucket = settings.lake_bucket if settings.lake_is_s3 else "robolake"
    ensure_bucket(settings, bucket)
    catalog = stack_catalog(settings)
    if catalog is not None:
        catalog.create_database()
