from pathlib import Path

import pytest

from robolake.settings import Settings, SettingsError


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
