"""The lake sink: episode and event topics -> Parquet tables, exactly once (see sink.py)."""

from consumers.lake_sink.sink import LakeSink, SinkStats

__all__ = ["LakeSink", "SinkStats"]
