"""The daily schedule asks for exactly the right days, either side of the provider's midnight."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from nova_pipeline.schedules import RANGE_END, RANGE_START, build_daily_schedule, days_for_tick
from nova_pipeline.settings import load_settings

UTC = dt.UTC


@pytest.mark.parametrize(
    ("tick", "first", "last"),
    [
        # 06:30 in Almaty is 01:30 UTC: yesterday is the 19th, lookback 16..18.
        (dt.datetime(2026, 11, 20, 1, 30, tzinfo=UTC), "2026-11-16", "2026-11-19"),
        # One minute before the provider's midnight (19:00 UTC) it is still the 20th there.
        (dt.datetime(2026, 11, 20, 18, 59, tzinfo=UTC), "2026-11-16", "2026-11-19"),
        # At 19:00 UTC it is already the 21st in Almaty: yesterday is the 20th.
        (dt.datetime(2026, 11, 20, 19, 0, tzinfo=UTC), "2026-11-17", "2026-11-20"),
        # Month and year boundaries.
        (dt.datetime(2026, 12, 31, 19, 0, tzinfo=UTC), "2026-12-28", "2026-12-31"),
    ],
)
def test_schedule_tick_requests_yesterday_and_the_lookback_days(tick, first, last):
    schedule = build_daily_schedule(load_settings({}))
    request = schedule(dg.build_schedule_context(scheduled_execution_time=tick))
    assert request.tags[RANGE_START] == first
    assert request.tags[RANGE_END] == last
    assert request.run_key == f"daily-{last}"


def test_the_next_days_tick_reruns_the_overlapping_days_under_a_new_run_key():
    schedule = build_daily_schedule(load_settings({}))
    monday = schedule(
        dg.build_schedule_context(
            scheduled_execution_time=dt.datetime(2026, 11, 23, 1, 30, tzinfo=UTC)
        )
    )
    tuesday = schedule(
        dg.build_schedule_context(
            scheduled_execution_time=dt.datetime(2026, 11, 24, 1, 30, tzinfo=UTC)
        )
    )
    assert monday.run_key != tuesday.run_key
    assert (monday.tags[RANGE_END], tuesday.tags[RANGE_START]) == ("2026-11-22", "2026-11-20")


def test_schedule_settings_time_zone_lookback_and_start_date():
    settings = load_settings(
        {"NOVA_SCHEDULE_TIME": "07:15", "NOVA_LOOKBACK_DAYS": "2", "NOVA_START_DATE": "2026-11-19"}
    )
    schedule = build_daily_schedule(settings)
    assert schedule.cron_schedule == "15 7 * * *"
    assert schedule.execution_timezone == "Asia/Almaty"
    assert schedule.default_status == dg.DefaultScheduleStatus.RUNNING
    request = schedule(
        dg.build_schedule_context(
            scheduled_execution_time=dt.datetime(2026, 11, 23, 2, 15, tzinfo=UTC)
        )
    )
    assert (request.tags[RANGE_START], request.tags[RANGE_END]) == ("2026-11-20", "2026-11-22")
    # Near the first partition the lookback stops at NOVA_START_DATE.
    for day in (22, 21, 20):
        early = schedule(
            dg.build_schedule_context(
                scheduled_execution_time=dt.datetime(2026, 11, day, 2, 15, tzinfo=UTC)
            )
        )
        assert (early.tags[RANGE_START], early.tags[RANGE_END]) == (
            "2026-11-19",
            f"2026-11-{day - 1}",
        )


def test_days_for_tick_is_pure():
    tick = dt.datetime(2026, 3, 1, 1, 0, tzinfo=UTC)
    assert days_for_tick(tick, "UTC", 2) == (dt.date(2026, 2, 26), dt.date(2026, 2, 28))
