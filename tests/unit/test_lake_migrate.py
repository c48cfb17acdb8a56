"""A lake written by robolake 0.1 (tests/fixtures/v1_lake, made with commit 5f4eb7b's
`robolake produce --synthetic`) converts into the lake's tables, episodes proven complete."""

from __future__ import annotations

from pathlib import Path

from infra.settings import Settings
from robolake.cli import main
from tests.lake_helpers import count, lake_fingerprint

V1 = Path(__file__).parent.parent / "fixtures" / "v1_lake"


def test_a_v1_lake_converts_once_and_every_episode_is_proven_complete(tmp_path, capsys):
    target = Settings.load(env={}, lake=f"file://{tmp_path}/lake")
    assert main(["migrate", "--from-v1", str(V1), "--lake", target.lake]) == 0
    assert "5 episodes verified, 0 failed" in capsys.readouterr().out
    assert count(target, "SELECT count(*) FROM episodes") == 5
    assert count(target, "SELECT count(*) FROM partial_episodes") == 0
    assert count(target, "SELECT sum(length) FROM episodes") == 3 * 12 + 2 * 7 == count(target, "SELECT count(*) FROM steps")
    assert count(target, "SELECT list(DISTINCT experiment_id ORDER BY experiment_id) FROM episodes") == ["exp-v1", "exp-v1b"]
    before = lake_fingerprint(target)
    assert main(["migrate", "--from-v1", str(V1), "--lake", target.lake]) == 0  # again: nothing new
    assert lake_fingerprint(target) == before


def test_a_tampered_v1_episode_stays_partial(tmp_path):
    import shutil

    import pyarrow.compute as pc
    import pyarrow.parquet as pq

    source = tmp_path / "v1"
    shutil.copytree(V1, source)
    victim = sorted(source.glob("steps/experiment_id=exp-v1/*/*.parquet"))[0]
    steps = pq.read_table(victim)
    pq.write_table(steps.set_column(steps.schema.get_field_index("reward"), "reward",
                                    pc.add(steps["reward"], 1.0)), victim)
    target = Settings.load(env={}, lake=f"file://{tmp_path}/lake")
    assert main(["migrate", "--from-v1", str(source), "--lake", target.lake]) == 0
    assert count(target, "SELECT list(DISTINCT problem) FROM partial_episodes") == ["checksum mismatch"]
    assert count(target, "SELECT count(*) FROM episodes") + count(target, "SELECT count(*) FROM partial_episodes") == 5


def test_no_v1_lake_is_a_clear_error(tmp_path, capsys):
    assert main(["migrate", "--from-v1", str(tmp_path / "nothing"), "--lake", f"file://{tmp_path}/lake"]) == 1
    assert "no v1 lake files under" in capsys.readouterr().err
