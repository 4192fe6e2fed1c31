"""The retry-delay rules, as pure functions."""

from __future__ import annotations

import datetime as dt
import random

from nova_pipeline.api.retry import RetryPolicy, parse_retry_after, retry_delay

POLICY = RetryPolicy(backoff_base_s=0.5, backoff_cap_s=4.0)


def test_retry_after_wins_over_backoff():
    assert retry_delay(5, POLICY, retry_after_s=7.0) == 7.0


def test_backoff_is_full_jitter_under_a_doubling_capped_ceiling():
    rng = random.Random(3)
    for attempt, ceiling in [(1, 0.5), (2, 1.0), (3, 2.0), (4, 4.0), (9, 4.0)]:
        draws = [retry_delay(attempt, POLICY, None, rng) for _ in range(300)]
        assert all(0 <= d <= ceiling for d in draws)
        assert max(draws) > 0.8 * ceiling and min(draws) < 0.2 * ceiling


def test_retry_after_parsing():
    now = dt.datetime(2026, 11, 20, 12, 0, 0, tzinfo=dt.UTC)
    assert parse_retry_after("3") == 3.0
    assert parse_retry_after("0") is None
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None
    assert parse_retry_after("Fri, 20 Nov 2026 12:00:10 GMT", now) == 10.0
