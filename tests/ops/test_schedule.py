"""The daily schedule asks for exactly the right days, either side of the provider's midnight,
and for the days it missed while the daemon was down."""

from __future__ import annotations

import datetime as dt

import dagster as dg
import pytest

from nova_pipeline.partitions import consecutive_ranges
from nova_pipeline.schedules import (
    CATCH_UP_TAG,
    RANGE_END,
    RANGE_START,
    SCHEDULE_NAME,
    build_daily_schedule,
    days_for_tick,
)
from nova_pipeline.settings import load_settings
from nova_pipeline.ui import project_home
from tests.conftest import served_items

UTC = dt.UTC


def tick(schedule: dg.ScheduleDefinition, at: dt.datetime, instance=None) -> list[dg.RunRequest]:
    """The run requests of the schedule's tick at `at`, on `instance` (else an empty one)."""
    if instance is None:
        with dg.instance_for_test() as fresh:
            return tick(schedule, at, fresh)
    return schedule(dg.build_schedule_context(instance=instance, scheduled_execution_time=at))


@pytest.mark.parametrize(
    ("at", "first", "last"),
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
def test_schedule_tick_requests_yesterday_and_the_lookback_days(at, first, last):
    [request] = tick(build_daily_schedule(load_settings({})), at)
    assert request.tags[RANGE_START] == first
    assert request.tags[RANGE_END] == last
    assert request.run_key == f"daily-{last}"


def test_the_next_days_tick_reruns_the_overlapping_days_under_a_new_run_key():
    schedule = build_daily_schedule(load_settings({}))
    [monday] = tick(schedule, dt.datetime(2026, 11, 23, 1, 30, tzinfo=UTC))
    [tuesday] = tick(schedule, dt.datetime(2026, 11, 24, 1, 30, tzinfo=UTC))
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
    [request] = tick(schedule, dt.datetime(2026, 11, 23, 2, 15, tzinfo=UTC))
    assert (request.tags[RANGE_START], request.tags[RANGE_END]) == ("2026-11-20", "2026-11-22")
    # Near the first partition the lookback stops at NOVA_START_DATE.
    for day in (22, 21, 20):
        [early] = tick(schedule, dt.datetime(2026, 11, day, 2, 15, tzinfo=UTC))
        assert (early.tags[RANGE_START], early.tags[RANGE_END]) == (
            "2026-11-19",
            f"2026-11-{day - 1}",
        )


def test_days_for_tick_is_pure():
    at = dt.datetime(2026, 3, 1, 1, 0, tzinfo=UTC)
    assert days_for_tick(at, "UTC", 2) == (dt.date(2026, 2, 26), dt.date(2026, 2, 28))


def test_missed_days_are_cut_into_runs_of_consecutive_days():
    days = [dt.date(2026, 11, d) for d in (9, 1, 2, 3, 4, 5, 7, 10)]
    assert [(a.day, b.day) for a, b in consecutive_ranges(days, 2)] == [
        (1, 2),
        (3, 4),
        (5, 5),
        (7, 7),
        (9, 10),
    ]
    assert consecutive_ranges([], 31) == []
    assert [(a.day, b.day) for a, b in consecutive_ranges(days)] == [(1, 5), (7, 7), (9, 10)]


def test_days_missed_while_the_daemon_was_down_are_pulled_at_its_next_tick(make_pipeline):
    """Dagster starts only the latest tick a schedule missed (a schedule without partitions
    does not catch up): after nine days with the machine off, the lookback would bring back
    the last four and leave six never pulled. The next tick asks for them too, in runs of
    at most NOVA_BACKFILL_DAYS_PER_RUN days after yesterday's; the tick after asks for
    yesterday's run alone. Days before the schedule's first run are a backfill's."""
    settings = load_settings({"NOVA_BACKFILL_DAYS_PER_RUN": "3", "NOVA_START_DATE": "2026-10-01"})
    schedule = build_daily_schedule(settings)
    first_tick = dt.datetime(2026, 11, 10, 1, 30, tzinfo=UTC)
    back = first_tick + dt.timedelta(days=10)
    pipeline = make_pipeline(now=back)
    # A schedule reads the instance through a reference, which an in-memory one has not.
    pipeline.instance = dg.DagsterInstance.from_config(str(project_home(pipeline.root / "home")))

    def run(request: dg.RunRequest) -> None:
        tags = {**request.tags, SCHEDULE_NAME: schedule.name}
        pipeline.run(request.tags[RANGE_START], request.tags[RANGE_END], tags=tags)

    [first] = tick(schedule, first_tick, pipeline.instance)
    assert (first.tags[RANGE_START], first.tags[RANGE_END]) == ("2026-11-06", "2026-11-09")
    run(first)

    daily, *catch_up = tick(schedule, back, pipeline.instance)
    assert (daily.tags[RANGE_START], daily.tags[RANGE_END]) == ("2026-11-16", "2026-11-19")
    assert CATCH_UP_TAG not in daily.tags
    assert [(r.tags[RANGE_START], r.tags[RANGE_END]) for r in catch_up] == [
        ("2026-11-10", "2026-11-12"),
        ("2026-11-13", "2026-11-15"),
    ]
    assert all(r.tags[CATCH_UP_TAG] == "true" for r in catch_up)
    # NOVA_START_DATE moved past days the schedule missed: they are no partitions any more.
    later = build_daily_schedule(
        load_settings({"NOVA_BACKFILL_DAYS_PER_RUN": "3", "NOVA_START_DATE": "2026-11-14"})
    )
    assert [
        (r.tags[RANGE_START], r.tags[RANGE_END]) for r in tick(later, back, pipeline.instance)
    ] == [
        ("2026-11-16", "2026-11-19"),
        ("2026-11-14", "2026-11-15"),
    ]
    assert len({r.run_key for r in (first, daily, *catch_up)}) == 4
    for request in (daily, *catch_up):
        run(request)

    days = [dt.date(2026, 11, 6) + dt.timedelta(days=n) for n in range(14)]
    stored = dict(pipeline.sql("SELECT day, count(*) FROM call_sms_events GROUP BY day"))
    assert stored == {day: len(served_items(pipeline.sim.api_url, day)) for day in days}
    assert all(stored.values())
    [next_day] = tick(schedule, back + dt.timedelta(days=1), pipeline.instance)
    assert next_day.tags[RANGE_END] == "2026-11-20"
