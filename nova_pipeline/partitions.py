"""The one partitioning of every asset: the provider's day, in the provider's time zone."""

import datetime as dt

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


DAILY = daily_partitions(current_settings())
"""Shared by every asset and check."""

BACKFILL = dg.BackfillPolicy.multi_run(
    max_partitions_per_run=current_settings().backfill_days_per_run
)
"""A backfill runs batches of days, not one run per day (a run costs seconds to start)."""
