"""The event bus: `open_bus(settings)` gives the in-process or the Kafka backend."""

from __future__ import annotations

from infra.bus.interface import Bus, BusError, Consumer, Delivery, Message, MessageTooLarge, Producer
from robolake.settings import Settings

__all__ = ["Bus", "BusError", "Consumer", "Delivery", "Message", "MessageTooLarge", "Producer", "open_bus"]

_shared_memory_bus = None


def open_bus(settings: Settings) -> Bus:
    """The configured bus. The memory bus is one per process, so every part of an embedded
    run (producers, sink, curriculum) talks through the same in-process log."""
    global _shared_memory_bus
    if settings.bus == "memory":
        from infra.bus.memory import MemoryBroker, MemoryBus

        if _shared_memory_bus is None:
            _shared_memory_bus = MemoryBus(MemoryBroker(settings.partitions), settings.max_message_bytes)
        return _shared_memory_bus
    from infra.bus.kafka import KafkaBus

    return KafkaBus(settings.kafka_bootstrap, settings.max_message_bytes, settings.partitions,
                    compression=settings.kafka_compression)
