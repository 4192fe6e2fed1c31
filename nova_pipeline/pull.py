"""Pull days from the API into the landing zone: every selector of every day, a few days
at a time. Plain Python (no Dagster, no DuckDB), so the fetch never holds the warehouse."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path

from nova_pipeline.api import NovaClient
from nova_pipeline.landing import Landing, PageRecord


@dataclass
class DayPull:
    """One day as pulled: its fetch folder, page records and what fetching it cost."""

    day: dt.date
    fetch_dir: Path
    records: list[PageRecord] = field(default_factory=list)
    requests: int = 0
    retries: int = 0
    retry_reasons: Counter[str] = field(default_factory=Counter)
    lone_surrogates_replaced: int = 0
    seconds: float = 0.0

    def items_per_pull(self) -> dict[str, int]:
        """Items of each selector pulled, in the order pulled; a pull that found nothing
        is there with 0 (its closing empty page)."""
        per_pull: dict[str, int] = {}
        for r in self.records:
            per_pull[r.selector] = per_pull.get(r.selector, 0) + r.item_count
        return per_pull

    def items(self, selector: str = "all") -> int:
        return self.items_per_pull().get(selector, 0)

    @property
    def group_items(self) -> int:
        """Items of the `g_<id>` pulls: mostly the same events again, with their group."""
        return sum(n for selector, n in self.items_per_pull().items() if selector != "all")

    @property
    def pages(self) -> int:
        return len(self.records)

    @property
    def body_bytes(self) -> int:
        return sum(r.body_bytes for r in self.records)

    @property
    def landed_bytes(self) -> int:
        """What the day takes on disk: its compressed landing files."""
        return sum(f.stat().st_size for f in self.fetch_dir.iterdir())


def pull_day(
    client: NovaClient, landing: Landing, day: dt.date, selectors: Sequence[str]
) -> DayPull:
    started = time.monotonic()
    result = DayPull(day=day, fetch_dir=landing.new_fetch_dir(day))
    try:
        with client:
            for selector in selectors:
                pages = client.pages(day, day, selector)
                result.records += landing.write_pages(day, result.fetch_dir, selector, pages)
    except BaseException:
        landing.discard(result.fetch_dir)
        raise
    result.requests = client.stats.requests
    result.retries = client.stats.retries
    result.retry_reasons = client.stats.by_reason
    result.lone_surrogates_replaced = client.stats.lone_surrogates_replaced
    result.seconds = time.monotonic() - started
    return result


def pull_days(
    make_client: Callable[[], NovaClient],
    landing: Landing,
    days: Sequence[dt.date],
    selectors: Sequence[str],
    concurrency: int = 4,
    log: logging.Logger | None = None,
) -> list[DayPull]:
    """Pull every day, `concurrency` at a time, each with its own client (connection pool).

    If any day fails, or the run is interrupted (Ctrl-C, or "Terminate" in the UI) while it
    waits for them, the days in flight stop before their next request, the days not started
    never start, the fetch folders of the days already pulled are removed and the first
    error is raised (the first in time: the days stopped by it raise `PullStopped` after).
    Nothing of a failed pull reaches the warehouse, and the run stops in about a request's
    time, not once the days in flight are whole (minutes, for big days).
    """
    clients = [make_client() for _ in days]
    error: BaseException | None = None
    with ThreadPoolExecutor(max_workers=max(1, min(concurrency, len(days)))) as pool:
        futures = [
            pool.submit(pull_day, client, landing, day, selectors)
            for client, day in zip(clients, days, strict=True)
        ]
        try:
            for future in as_completed(futures):
                pulled = future.result()
                if log:
                    log.info(
                        "pulled %s: %d pages, %d items, %d retries in %.1f s",
                        pulled.day,
                        pulled.pages,
                        pulled.items(),
                        pulled.retries,
                        pulled.seconds,
                    )
        except BaseException as exc:
            error = exc
            for client in clients:
                client.stop()
            for pending in futures:
                pending.cancel()
    pulled_whole = [f.result() for f in futures if not f.cancelled() and f.exception() is None]
    if error is not None:
        for pulled in pulled_whole:
            landing.discard(pulled.fetch_dir)
        raise error
    return pulled_whole
