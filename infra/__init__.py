"""Settings, the infra stack (Kafka + MinIO) and talking to it: bus, object store, lake catalog, DuckDB."""
