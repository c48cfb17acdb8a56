"""The configured bus: `open_bus(settings)` gives the in-process or the Kafka backend."""

from __future__ import annotations

import threading

from infra.bus.interface import Bus
from infra.settings import Settings

_memory_buses: dict[str, Bus] = {}
_memory_buses_lock = threading.Lock()


def open_bus(settings: Settings) -> Bus:
    """The configured bus. The memory bus is one per process and lake, so every part of an
    embedded run (producers, sink, curriculum) talks through the same in-process log."""
    if settings.bus == "memory":
        from infra.bus.memory import MemoryBroker, MemoryBus

        with _memory_buses_lock:  # worker threads open it at the same moment: one bus, not two
            if settings.lake_root not in _memory_buses:
                _memory_buses[settings.lake_root] = MemoryBus(MemoryBroker(settings.partitions),
                                                              settings.max_message_bytes)
            return _memory_buses[settings.lake_root]
    from infra.bus.kafka import KafkaBus
    from infra.optional import require

    require("kafka", "kafka")
    return KafkaBus(settings.kafka_bootstrap, settings.max_message_bytes, settings.partitions,
                    compression=settings.kafka_compression, connect_timeout_s=settings.kafka_connect_timeout,
                    max_poll_interval_s=settings.kafka_max_poll_interval)
