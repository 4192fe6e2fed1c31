"""Automation: the daily schedule with its lookback window, and partition-aware freshness."""

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg

from nova_pipeline.clock import local_time
from nova_pipeline.jobs import WAREHOUSE_ASSETS, call_sms_job
from nova_pipeline.partitions import DAILY
from nova_pipeline.settings import current_settings

RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"


def days_for_tick(tick: dt.datetime, timezone: str, lookback_days: int) -> tuple[dt.date, dt.date]:
    """Yesterday (in the provider's zone, at the tick) and the `lookback_days` before it.

    The provider syncs once a day, so yesterday is the newest complete day; the days before
    it are pulled again because the sync can still add late records or re-rate old ones.
    """
    yesterday = tick.astimezone(ZoneInfo(timezone)).date() - dt.timedelta(days=1)
    return yesterday - dt.timedelta(days=lookback_days), yesterday


def _cron(at: str) -> str:
    time = local_time(at)
    return f"{time.minute} {time.hour} * * *"


def build_daily_schedule(settings=None) -> dg.ScheduleDefinition:
    settings = settings or current_settings()

    @dg.schedule(
        name="call_sms_daily",
        job=call_sms_job,
        cron_schedule=_cron(settings.schedule_time),
        execution_timezone=settings.timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            f"Every day at {settings.schedule_time} {settings.timezone} (after the provider's "
            f"daily sync): yesterday, and the {settings.lookback_days} days before it again "
            "(late and re-rated records), in one run. Re-pulled days are replaced, not doubled."
        ),
    )
    def call_sms_daily(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        first, last = days_for_tick(
            context.scheduled_execution_time, settings.timezone, settings.lookback_days
        )
        first = max(first, settings.start_date)
        return dg.RunRequest(
            run_key=f"daily-{last.isoformat()}",
            tags={RANGE_START: first.isoformat(), RANGE_END: last.isoformat()},
        )

    return call_sms_daily


# Freshness: "yesterday's partition of every asset is in by the deadline". Dagster 1.13's
# FreshnessPolicy judges an asset by its latest materialization of any partition, so a
# backfill of old days would make it look fresh (dagster discussion #34023). The time-
# partition freshness checks look up the one partition that must exist (the last day
# completed before the latest deadline), which is the question our users ask. They are
# marked superseded, not deprecated; revisit when FreshnessPolicy learns partitions.
FRESHNESS_CHECKS = dg.build_time_partition_freshness_checks(
    assets=WAREHOUSE_ASSETS,
    deadline_cron=_cron(current_settings().freshness_deadline),
    timezone=DAILY.timezone,
)

FRESHNESS_SENSOR = dg.build_sensor_for_freshness_checks(
    freshness_checks=FRESHNESS_CHECKS,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
