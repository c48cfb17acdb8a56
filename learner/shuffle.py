"""A seeded shuffle buffer over column batches and a background prefetcher: NumPy only."""

from __future__ import annotations

import queue
import threading
from typing import Iterable, Iterator

import numpy as np

Columns = dict[str, np.ndarray]


class ShuffleBuffer:
    """Holds at most `capacity` rows. Once full, each incoming row takes the slot of a uniformly
    chosen held row, which is emitted; at the end the rest comes out in random order. Seeded."""

    def __init__(self, capacity: int, seed: int):
        if capacity < 1:
            raise ValueError(f"capacity must be >= 1, got {capacity}")
        self.capacity, self.rng = capacity, np.random.default_rng(seed)
        self.held: Columns | None = None
        self.size = 0

    def push(self, rows: Columns) -> Iterator[Columns]:
        """Add rows; yields the rows they displace (in pieces)."""
        n = len(next(iter(rows.values())))
        start = 0
        if self.held is None:
            self.held = {k: np.empty((self.capacity, *v.shape[1:]), v.dtype) for k, v in rows.items()}
        if self.size < self.capacity:  # filling up
            take = min(n, self.capacity - self.size)
            for k, v in rows.items():
                self.held[k][self.size:self.size + take] = v[:take]
            self.size += take
            start = take
        while start < n:
            take = min(n - start, self.capacity)
            slots = self.rng.choice(self.capacity, size=take, replace=False)
            out = {k: self.held[k][slots].copy() for k in self.held}
            for k, v in rows.items():
                self.held[k][slots] = v[start:start + take]
            start += take
            yield out

    def drain(self) -> Iterator[Columns]:
        if self.size:
            order = self.rng.permutation(self.size)
            yield {k: v[:self.size][order] for k, v in self.held.items()}
        self.held, self.size = None, 0


def rebatch(pieces: Iterable[Columns], batch_size: int, drop_last: bool = False) -> Iterator[Columns]:
    """Pieces of any length -> batches of exactly `batch_size` rows (the last may be shorter)."""
    pending: list[Columns] = []
    count = 0
    for piece in pieces:
        pending.append(piece)
        count += len(next(iter(piece.values())))
        while count >= batch_size:
            joined = {k: np.concatenate([p[k] for p in pending]) for k in pending[0]}
            yield {k: v[:batch_size] for k, v in joined.items()}
            rest = {k: v[batch_size:] for k, v in joined.items()}
            count -= batch_size
            pending = [rest] if count else []
    if count and not drop_last:
        yield {k: np.concatenate([p[k] for p in pending]) for k in pending[0]}


class Prefetcher:
    """Runs `make()` (an iterator factory) in a daemon thread, `depth` items ahead of the reader.
    Errors are raised in the reader; `close()` (or leaving a `with` block) stops the thread, and a
    reader waiting for the next item then ends instead of waiting forever. `interrupt(thread)`, if
    given, ends what the thread is blocked in (a DuckDB query): a daemon thread still inside C++ code
    when the interpreter exits aborts the process (`terminate called without an active exception`)."""

    _END = object()

    def __init__(self, make, depth: int = 4, interrupt=None):
        self._queue: queue.Queue = queue.Queue(maxsize=max(1, depth))
        self._stop, self._interrupt = threading.Event(), interrupt
        self._thread = threading.Thread(target=self._run, args=(make,), daemon=True, name="lake-prefetch")
        self._thread.start()

    def _run(self, make) -> None:
        try:
            for item in make():
                if not self._put(item):
                    return
            self._put(self._END)
        except BaseException as exc:  # handed to the reader
            self._put(exc)

    def _put(self, item) -> bool:
        while not self._stop.is_set():
            try:
                self._queue.put(item, timeout=0.1)
                return True
            except queue.Full:
                continue
        return False

    def __iter__(self):
        """Items in order; ends when the producer ends or when the prefetcher is closed (by anyone:
        a reader never waits on a stopped thread)."""
        while True:
            try:
                item = self._queue.get(timeout=0.1)
            except queue.Empty:
                if self._stop.is_set() or not self._thread.is_alive():
                    if self._queue.empty():  # the thread puts nothing more once stopped or gone
                        return
                continue
            if self._stop.is_set():
                return
            if item is self._END:
                return
            if isinstance(item, BaseException):
                raise item
            yield item

    def close(self) -> None:
        self._stop.set()
        if self._interrupt is not None and self._thread.is_alive():
            self._interrupt(self._thread)
        self._thread.join(timeout=60)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
