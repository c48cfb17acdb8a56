"""robolake's version, which the CLI shows and lineage events record (pyproject.toml says the same)."""

VERSION = "0.1.0"
