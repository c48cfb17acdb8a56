from pathlib import Path

import pytest

from infra.settings import Settings, SettingsError


def test_embedded_default_needs_no_services():
    s = Settings.load(env={})
    assert s.bus == "memory" and s.kafka_bootstrap == []
    assert not s.lake_is_s3 and Path(s.lake_root).is_absolute()
    assert s.stack_state == s.home / "stack"


def test_environment_then_flags():
    env = {"ROBOLAKE_BUS": "kafka://a:1,b:2", "ROBOLAKE_PARTITIONS": "8", "ROBOLAKE_S3_SECURE": "yes",
           "ROBOLAKE_LAKE": "s3://robolake/lake", "ROBOLAKE_HOME": "~/x"}
    s = Settings.load(env=env)
    assert s.kafka_bootstrap == ["a:1", "b:2"]
    assert s.partitions == 8 and s.s3_secure is True
    assert s.lake_bucket == "robolake" and s.lake_root == "s3://robolake/lake"
    assert s.home == Path("~/x").expanduser()
    assert Settings.load(env=env, bus="memory", partitions=None).bus == "memory"  # a flag wins; None is "not given"
    assert Settings.load(env=env, partitions=None).partitions == 8


@pytest.mark.parametrize("overrides, message", [
    ({"bus": "kafka:/x"}, "bus must be"),
    ({"bus": "kafka://host"}, "host:port"),
    ({"bus": "redis://a:1"}, "bus must be"),
    ({"lake": "/tmp/lake"}, "lake must be"),
    ({"lake": "s3://Bad_Bucket/x"}, "not a valid S3 bucket"),
    ({"s3_endpoint": "localhost"}, "host:port"),
    ({"kafka_port": 70000}, "kafka_port"),
    ({"partitions": 0}, "partitions"),
    ({"s3_secret_key": "short"}, "8 characters"),
    ({"sql_timeout_s": 0}, "sql_timeout_s"),
    ({"sql_memory_limit": "lots"}, "sql_memory_limit must be a size"),
    ({"sql_memory_limit": "0%"}, "sql_memory_limit must be a size"),
    ({"sql_memory_limit": "100KB"}, "at least 1MiB"),
])
def test_bad_values_name_the_problem(overrides, message):
    with pytest.raises(SettingsError, match=message):
        Settings.load(env={}, **overrides)


def test_bad_environment_value_names_the_variable():
    with pytest.raises(SettingsError, match="ROBOLAKE_PARTITIONS='many'"):
        Settings.load(env={"ROBOLAKE_PARTITIONS": "many"})


def test_file_lake_has_no_bucket():
    with pytest.raises(SettingsError, match="no bucket"):
        Settings.load(env={}).lake_bucket


def test_sql_limits_default_to_a_minute_and_a_quarter_of_ram():
    import os

    ram = os.sysconf("SC_PHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
    s = Settings.load(env={})
    assert s.sql_timeout_s == 60 and s.sql_memory_bytes == ram // 4
    s = Settings.load(env={"ROBOLAKE_SQL_TIMEOUT_S": "2.5", "ROBOLAKE_SQL_MEMORY_LIMIT": "512MiB"})
    assert s.sql_timeout_s == 2.5 and s.sql_memory_bytes == 512 * 2**20
    assert Settings.load(env={}, sql_memory_limit="1.5GB").sql_memory_bytes == 1_500_000_000
