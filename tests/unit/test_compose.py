"""infra/compose.yaml (for Docker users) must agree with the native launcher's defaults."""

from pathlib import Path

import yaml

from infra.settings import Settings
from schemas import topics

COMPOSE = yaml.safe_load((Path(__file__).parents[2] / "infra" / "compose.yaml").read_text())


def test_ports_and_credentials_match_the_defaults():
    s = Settings.load(env={})
    services = COMPOSE["services"]
    assert f"127.0.0.1:{s.kafka_port}:9092" in services["kafka"]["ports"]
    assert f"127.0.0.1:{s.s3_host_port[1]}:9000" in services["minio"]["ports"]
    env = services["minio"]["environment"]
    assert env["MINIO_ROOT_USER"].endswith(f":-{s.s3_access_key}}}")
    assert env["MINIO_ROOT_PASSWORD"].endswith(f":-{s.s3_secret_key}}}")


def test_init_job_creates_every_topic_and_the_bucket():
    script = COMPOSE["services"]["init"]["command"][0]
    listed = script.split("for topic in ", 1)[1].split(";", 1)[0].split()
    assert tuple(listed) == topics.ALL
    assert "lake/robolake" in COMPOSE["services"]["bucket"]["command"][0]
    assert Settings.load(env={}, lake="s3://robolake/lake").lake_bucket == "robolake"


def test_kafka_version_matches_the_native_launcher():
    from infra.kafka_server import KAFKA_VERSION

    assert COMPOSE["services"]["kafka"]["image"] == f"apache/kafka:{KAFKA_VERSION}"
