"""The one partitioning of every asset: the provider's day, in the provider's time zone."""

import datetime as dt
from collections.abc import Iterable

import dagster as dg

from nova_pipeline.settings import Settings, current_settings


def daily_partitions(settings: Settings) -> dg.DailyPartitionsDefinition:
    return dg.DailyPartitionsDefinition(
        start_date=settings.start_date.isoformat(), timezone=settings.timezone
    )


def day_range(
    context: dg.AssetExecutionContext | dg.AssetCheckExecutionContext,
) -> tuple[dt.date, dt.date]:
    """The first and last provider day of the run (one day, or a backfill's range)."""
    keys = context.partition_key_range
    return dt.date.fromisoformat(keys.start), dt.date.fromisoformat(keys.end)


def days_between(start: dt.date, end: dt.date) -> list[dt.date]:
    return [start + dt.timedelta(days=i) for i in range((end - start).days + 1)]


def consecutive_ranges(
    days: Iterable[dt.date], at_most: int | None = None
) -> list[tuple[dt.date, dt.date]]:
    """`days` as the first and last day of runs of consecutive days, none over `at_most`
    days: the ranges to launch runs or a backfill over."""
    ranges: list[tuple[dt.date, dt.date]] = []
    for day in sorted(days):
        if ranges:
            first, last = ranges[-1]
            if day == last + dt.timedelta(days=1) and (
                at_most is None or (day - first).days < at_most
            ):
                ranges[-1] = (first, day)
                continue
        ranges.append((day, day))
    return ranges


DAILY = daily_partitions(current_settings())
"""Shared by every asset and check."""

BACKFILL = dg.BackfillPolicy.multi_run(
    max_partitions_per_run=current_settings().backfill_days_per_run
)
"""A backfill runs batches of days, not one run per day (a run costs seconds to start)."""
