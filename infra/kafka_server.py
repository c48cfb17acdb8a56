"""A single-node Apache Kafka broker in KRaft mode, run from Maven Central's jars with our JDK.

Install once per version into <home>/kafka-<version>/libs (mvn, with its own local repository
under <home>/m2); format the storage once per state directory; then run `kafka.Kafka`.
"""

from __future__ import annotations

import base64
import logging
import shutil
import subprocess
import time
import uuid
from pathlib import Path

from infra.process import ServiceError, ServiceProcess, port_open

log = logging.getLogger(__name__)

KAFKA_VERSION = "4.1.1"
HEAP = ["-Xms256m", "-Xmx1g"]
_HERE = Path(__file__).parent / "kafka"


def install(home: Path) -> Path:
    """The directory of broker jars, resolved with mvn on first use."""
    libs = home / f"kafka-{KAFKA_VERSION}" / "libs"
    done = libs / ".complete"
    if done.exists():
        return libs
    for tool in ("mvn", "java"):
        if shutil.which(tool) is None:
            raise ServiceError(f"Kafka needs '{tool}' on PATH (a JDK >= 17 and Maven); it was not found")
    log.info("resolving Apache Kafka %s jars with Maven (first time only)…", KAFKA_VERSION)
    started = time.monotonic()
    shutil.rmtree(libs, ignore_errors=True)
    cmd = [
        "mvn", "-q", "-B", "-f", str(_HERE / "pom.xml"), "dependency:copy-dependencies",
        f"-Dkafka.version={KAFKA_VERSION}", f"-DoutputDirectory={libs}",
        f"-Dmaven.repo.local={home / 'm2'}",
    ]
    result = subprocess.run(cmd, capture_output=True, text=True)
    if result.returncode != 0:
        raise ServiceError(f"mvn could not resolve Kafka {KAFKA_VERSION}:\n{(result.stdout + result.stderr)[-2000:]}")
    done.touch()
    log.info("Kafka jars ready in %.1fs: %s", time.monotonic() - started, libs)
    return libs


def server_properties(data_dir: Path, port: int, controller_port: int, partitions: int) -> str:
    return "\n".join([
        "process.roles=broker,controller",
        "node.id=1",
        f"controller.quorum.voters=1@127.0.0.1:{controller_port}",
        f"listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}",
        f"advertised.listeners=PLAINTEXT://127.0.0.1:{port}",
        "controller.listener.names=CONTROLLER",
        "listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT",
        "inter.broker.listener.name=PLAINTEXT",
        f"log.dirs={data_dir}",
        f"num.partitions={partitions}",
        # Topics are created explicitly (infra/topics.py) so a typo never makes a new one.
        "auto.create.topics.enable=false",
        "offsets.topic.replication.factor=1",
        "transaction.state.log.replication.factor=1",
        "transaction.state.log.min.isr=1",
        "group.initial.rebalance.delay.ms=0",
        # Episodes are the source of truth: keep them until a user decides otherwise.
        "log.retention.hours=-1",
        "message.max.bytes=2097152",
        "",
    ])


class KafkaServer:
    name = "kafka"

    def __init__(self, home: Path, state_dir: Path, port: int, controller_port: int, partitions: int):
        self.home, self.port, self.controller_port = home, port, controller_port
        self.dir = state_dir / self.name
        self.config = self.dir / "server.properties"
        self.data = self.dir / "data"
        self.partitions = partitions
        self.process = ServiceProcess(self.name, self.dir, marker=str(self.config))

    @property
    def ports(self) -> list[int]:
        return [self.port, self.controller_port]

    @property
    def endpoint(self) -> str:
        return f"kafka://127.0.0.1:{self.port}"

    def argv(self) -> list[str]:
        libs = install(self.home)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.config.write_text(server_properties(self.data, self.port, self.controller_port, self.partitions))
        classpath = f"{libs}/*"
        if not (self.data / "meta.properties").exists():
            self._format(classpath)
        return [
            "java", *HEAP, "-XX:+UseG1GC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={_HERE / 'log4j2.properties'}",
            "-cp", classpath, "kafka.Kafka", str(self.config),
        ]

    def env(self) -> dict[str, str]:
        return {}

    def _format(self, classpath: str) -> None:
        cluster_id = base64.urlsafe_b64encode(uuid.uuid4().bytes).rstrip(b"=").decode()
        shutil.rmtree(self.data, ignore_errors=True)
        # "--cluster-id=…" in one word: a base64 id may start with "-" and read as an option.
        cmd = ["java", "-cp", classpath, "kafka.tools.StorageTool", "format",
               f"--cluster-id={cluster_id}", f"--config={self.config}"]
        result = subprocess.run(cmd, capture_output=True, text=True)
        if result.returncode != 0:
            raise ServiceError(f"formatting Kafka storage failed:\n{(result.stdout + result.stderr)[-2000:]}")
        log.info("formatted Kafka storage %s (cluster %s)", self.data, cluster_id)

    def healthy(self) -> bool:
        if not port_open("127.0.0.1", self.port):
            return False
        try:
            from infra.topics import admin_client

            client = admin_client([f"127.0.0.1:{self.port}"], timeout_ms=3000)
            try:
                client.describe_cluster()
            finally:
                client.close()
            return True
        except Exception:  # any failure here only means "not ready yet"
            return False
