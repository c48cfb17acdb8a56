"""`robolake compact`: fewer files, the same query results, safe to interrupt."""

from __future__ import annotations

from consumers.lake_sink import LakeSink
from consumers.lake_sink.compact import compact
from infra.bus.memory import MemoryBroker, MemoryBus
from infra.lake_store import LocalStore
from producers.synthetic import SyntheticConfig, produce
from robolake.settings import Settings
from schemas import lake
from tests.lake_helpers import lake_fingerprint


class DiesBeforeDeleting(LocalStore):
    def delete(self, keys):
        raise KeyboardInterrupt("killed after writing the merged file")


def _many_small_files(tmp_path):
    settings = Settings.load(env={}, lake=f"file://{tmp_path}/lake")
    bus = MemoryBus(MemoryBroker(partitions=2))
    for seed in range(6):  # six flushes: six files per table and partition
        produce(bus.producer(), SyntheticConfig(episodes=2, steps=20, seed=seed))
        LakeSink(settings, bus=bus, flush_seconds=0.05).run(until_idle_s=0.2)
    return settings, LocalStore(settings.lake_root)


def test_compaction_merges_files_and_changes_no_query_result(tmp_path):
    settings, store = _many_small_files(tmp_path)
    before = lake_fingerprint(settings)
    stats = compact(store, committed=None)
    assert stats.files_after < stats.files_before / 3
    assert lake_fingerprint(settings) == before
    merged = [k for k in store.list("steps/") if lake.parse_file_name(k)[2] != lake.parse_file_name(k)[3]]
    assert merged, "merged files are named by the offset range they cover"
    again = compact(store, committed=None)
    assert again.merged_files == 0 and lake_fingerprint(settings) == before


def test_an_interrupted_compaction_changes_no_query_result_and_is_finished_later(tmp_path):
    settings, store = _many_small_files(tmp_path)
    before = lake_fingerprint(settings)
    try:
        compact(DiesBeforeDeleting(settings.lake_root), committed=None)
    except KeyboardInterrupt:
        pass
    leftovers = store.list("")
    assert len(lake.live_files(leftovers)) < len([k for k in leftovers if lake.parse_file_name(k)])
    assert lake_fingerprint(settings) == before, "readers skip the inputs of the merged file"
    compact(store, committed=None)
    assert lake_fingerprint(settings) == before


def test_files_the_sink_has_not_committed_are_left_alone(tmp_path):
    settings, store = _many_small_files(tmp_path)
    files = store.list("steps/")
    starts = sorted({lake.parse_file_name(k)[2] for k in files})
    committed = {("robolake.episodes", p): starts[2] for p in range(2)}
    compact(store, committed=committed)
    untouched = [k for k in files if lake.parse_file_name(k)[2] >= starts[2]]
    assert set(untouched) <= set(store.list("steps/"))
