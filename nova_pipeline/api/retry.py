"""When to retry and how long to wait: pure functions, tested without a server."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from email.utils import parsedate_to_datetime

RETRYABLE_STATUS = frozenset({408, 429, *range(500, 600)} - {501, 505})
"""A request timeout, rate limiting, and every server error but the two that say the server
cannot serve this request at all (501 Not Implemented, 505 HTTP Version Not Supported):
a CDN's own 5xx (Cloudflare's 520-524) or a 507 pass like a 503."""


@dataclass(frozen=True)
class RetryPolicy:
    max_attempts: int = 8
    """Attempts per request, the first included."""
    deadline_s: float = 600.0
    """Wall time one request may take across all its attempts and waits."""
    backoff_base_s: float = 0.5
    """First backoff ceiling; it doubles per attempt."""
    backoff_cap_s: float = 30.0
    """No single backoff wait is longer than this."""


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds from a Retry-After header (seconds or HTTP date); None when absent or 0."""
    if not value:
        return None
    value = value.strip()
    if value.isdigit():
        seconds = float(value)
    else:
        try:
            when = parsedate_to_datetime(value)
        except (TypeError, ValueError):
            return None
        seconds = (when - (now or dt.datetime.now(dt.UTC))).total_seconds()
    return seconds if seconds > 0 else None


def retry_delay(
    attempt: int,
    policy: RetryPolicy,
    retry_after_s: float | None = None,
    rng: random.Random | None = None,
) -> float:
    """Wait before attempt `attempt + 1`: the server's Retry-After first, else capped
    exponential backoff with full jitter (a uniform draw up to the ceiling)."""
    if retry_after_s is not None:
        return retry_after_s
    ceiling = min(policy.backoff_cap_s, policy.backoff_base_s * 2 ** (attempt - 1))
    return (rng or random).uniform(0, ceiling)
