"""The lake sink: episode and event topics -> Parquet tables, exactly once (sink.py); compaction, replay."""
