"""The event bus: one interface (interface.py), two backends (memory.py, kafka.py), the configured one (backend.py)."""
