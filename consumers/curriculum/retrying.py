"""The network backends' retry policy, shared: a call that failed for a passing reason (429, 5xx,
a timeout, a dropped connection) is tried again after an exponential backoff with jitter, honouring
the server's Retry-After, within a bounded number of attempts and a bounded total time. Anything
else (400, 401, a body that is not JSON) fails at once: asking again would get the same answer.

The SDKs' own retries are switched off, so this is the only place that decides.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Callable, TypeVar

from consumers.curriculum.vlm import VLMError

log = logging.getLogger(__name__)
T = TypeVar("T")


class Retryable(Exception):
    """A failure worth another attempt; `retry_after`: the seconds the server asked us to wait."""

    def __init__(self, message: str, retry_after: float | None = None):
        super().__init__(message)
        self.retry_after = retry_after


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 5              # tries in all, the first included
    backoff_s: float = 1.0         # the first wait; doubled after each failed attempt
    max_backoff_s: float = 30.0    # the longest computed wait (a server's Retry-After may ask for more)
    total_s: float = 300.0         # never start a wait that would end later than this after the first try

    def __post_init__(self) -> None:
        if self.attempts < 1 or self.backoff_s < 0 or self.max_backoff_s < 0 or self.total_s <= 0:
            raise ValueError(f"unusable retry policy {self}")

    def wait_before(self, attempt: int, retry_after: float | None, rng: Callable[[], float]) -> float:
        """Seconds to wait before try `attempt` (2, 3, …): half the exponential step fixed, half
        random, so clients that failed together do not all come back together."""
        step = min(self.max_backoff_s, self.backoff_s * 2 ** (attempt - 2))
        wait = step / 2 + rng() * step / 2
        return max(wait, retry_after or 0.0)


def call_with_retries(once: Callable[[], T], policy: RetryPolicy, label: str,
                      sleep: Callable[[float], None] = time.sleep, rng: Callable[[], float] = random.random,
                      clock: Callable[[], float] = time.monotonic) -> T:
    """`once()` until it returns; it raises Retryable for a passing failure and VLMError for one
    that is not. After the last allowed attempt: VLMError naming the attempts and the last failure."""
    started = clock()
    for attempt in range(1, policy.attempts + 1):
        try:
            return once()
        except Retryable as failure:
            elapsed = clock() - started
            if attempt == policy.attempts:
                raise VLMError(f"{label}: gave up after {attempt} attempts in {elapsed:.1f}s: {failure}") from None
            wait = policy.wait_before(attempt + 1, failure.retry_after, rng)
            if elapsed + wait > policy.total_s:
                raise VLMError(f"{label}: gave up after {attempt} attempts in {elapsed:.1f}s (the next wait of "
                               f"{wait:.1f}s would pass the {policy.total_s:g}s limit): {failure}") from None
            log.warning("%s: %s; attempt %d of %d in %.2fs", label, failure, attempt + 1, policy.attempts, wait)
            sleep(wait)
    raise AssertionError("unreachable")


def retry_after_seconds(headers) -> float | None:
    """The Retry-After header (seconds, or an HTTP date) as seconds from now; None if absent or unreadable."""
    value = headers.get("retry-after") if headers is not None else None
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        return max(0.0, parsedate_to_datetime(value).timestamp() - time.time())
    except (TypeError, ValueError):
        return None


def is_retryable_status(status: int | None) -> bool:
    return status is not None and (status in (408, 429) or status >= 500)


def shorten(text: str, limit: int = 300) -> str:
    """A server's message on one line, cut to a readable length (HTML error pages can be long)."""
    flat = " ".join(str(text).split())
    return flat if len(flat) <= limit else flat[:limit - 1] + "…"
