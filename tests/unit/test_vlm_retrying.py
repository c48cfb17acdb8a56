"""The network backends' shared retry policy: exponential backoff with jitter, Retry-After, bounds."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from email.utils import format_datetime

import pytest

from consumers.curriculum.retrying import Retryable, RetryPolicy, call_with_retries, retry_after_seconds
from consumers.curriculum.vlm import VLMError


def _failing(failures: list[Exception], result="ok"):
    calls = []

    def once():
        calls.append(1)
        if failures:
            raise failures.pop(0)
        return result
    return once, calls


def test_waits_double_within_their_jitter_and_stop_at_the_cap():
    policy = RetryPolicy(attempts=8, backoff_s=1.0, max_backoff_s=4.0)
    for attempt, step in [(2, 1.0), (3, 2.0), (4, 4.0), (6, 4.0)]:
        assert policy.wait_before(attempt, None, rng=lambda: 0.0) == step / 2
        assert policy.wait_before(attempt, None, rng=lambda: 1.0) == step


def test_a_servers_retry_after_wins_over_a_shorter_backoff():
    assert RetryPolicy(backoff_s=1.0).wait_before(2, 7.5, rng=lambda: 1.0) == 7.5


def test_passing_failures_are_retried_with_growing_waits():
    waits = []
    once, calls = _failing([Retryable("429"), Retryable("503")])
    assert call_with_retries(once, RetryPolicy(backoff_s=1.0), "test", sleep=waits.append, rng=lambda: 1.0) == "ok"
    assert len(calls) == 3 and waits == [1.0, 2.0]


def test_a_lasting_failure_is_not_retried():
    once, calls = _failing([VLMError("HTTP 400: bad schema")])
    with pytest.raises(VLMError, match="HTTP 400"):
        call_with_retries(once, RetryPolicy(), "test", sleep=lambda s: None)
    assert len(calls) == 1


def test_the_total_time_bounds_the_waits():
    waits = []
    once, calls = _failing([Retryable("429")] * 10)
    with pytest.raises(VLMError, match="gave up after 2 attempts in 2.0s.*would pass the 5s limit"):
        call_with_retries(once, RetryPolicy(attempts=10, backoff_s=2.0, total_s=5), "test", sleep=waits.append,
                          rng=lambda: 1.0, clock=lambda: sum(waits))
    assert waits == [2.0], "the second wait (4s) would end after 5s: give up instead"


def test_retry_after_is_read_as_seconds_or_a_date():
    assert retry_after_seconds({"retry-after": "3"}) == 3.0
    when = format_datetime(datetime.now(timezone.utc) + timedelta(seconds=30), usegmt=True)
    assert 25 < retry_after_seconds({"retry-after": when}) <= 30
    assert retry_after_seconds({"retry-after": "soon"}) is None
    assert retry_after_seconds({}) is None and retry_after_seconds(None) is None
