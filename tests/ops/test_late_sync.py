"""A yesterday pulled before the provider's sync is pulled again once the sync has run, and
one the daily run failed to pull (the API down) or to load (another day's check stopped the
rollups) is pulled again; one its own blocking check stopped is left to whoever reads it."""

from __future__ import annotations

import datetime as dt
import os
import shutil
import subprocess
import sys
import time

import dagster as dg
import duckdb
import httpx

from nova_pipeline.definitions import defs
from nova_pipeline.resources import NovaApiResource
from nova_pipeline.schedules import (
    DAILY_SCHEDULE,
    LATE_SYNC_TAG,
    RANGE_END,
    RANGE_START,
    SCHEDULE_NAME,
    WILL_RETRY,
    late_sync_request,
)
from nova_pipeline.simulator.process import free_port, simulator_process
from nova_pipeline.ui import REPO, dagster_dev
from tests.conftest import ALMATY, independent_costs, served_items

DAY = dt.date(2026, 11, 19)
BEFORE_SYNC = dt.datetime(2026, 11, 20, 3, 0, tzinfo=ALMATY)  # the sync of the 20th is at 04:00
TICK = dt.datetime(2026, 11, 20, 7, 0, tzinfo=ALMATY)
SCHEDULED = {SCHEDULE_NAME: DAILY_SCHEDULE}


def skip_message(instance: dg.DagsterInstance, now: dt.datetime, *args, **kwargs) -> str:
    """Why the sensor requests no run at `now` (it must request none)."""
    result = late_sync_request(instance, now, *args, **kwargs)
    assert isinstance(result, dg.SkipReason), result
    return result.skip_message


def test_an_empty_yesterday_is_pulled_again_until_it_has_items(start_simulator, make_pipeline):
    pipeline = make_pipeline(sim=start_simulator(now=BEFORE_SYNC))
    assert "not been pulled yet" in skip_message(pipeline.instance, TICK, "Asia/Almaty")

    pipeline.run(DAY.isoformat())
    assert pipeline.sql("SELECT count(*) FROM call_sms_events") == [(0,)]
    request = late_sync_request(pipeline.instance, TICK, "Asia/Almaty")
    assert isinstance(request, dg.RunRequest)
    day = DAY.isoformat()
    assert request.tags == {RANGE_START: day, RANGE_END: day, LATE_SYNC_TAG: day}
    again = late_sync_request(pipeline.instance, TICK + dt.timedelta(minutes=30), "Asia/Almaty")
    assert again.run_key == request.run_key, "one re-pull per empty pull, however many ticks"

    pipeline.sim.simulator.set_now(TICK)
    pipeline.run(day, tags=request.tags)
    [(events,)] = pipeline.sql("SELECT count(*) FROM call_sms_events WHERE day = ?", DAY)
    assert events == len(served_items(pipeline.sim.api_url, DAY)) > 0
    assert "has items" in skip_message(
        pipeline.instance, TICK + dt.timedelta(hours=1), "Asia/Almaty"
    )


def test_a_day_with_items_and_no_group_configured_is_not_pulled_again(
    start_simulator, make_pipeline
):
    pipeline = make_pipeline(groups="", sim=start_simulator(now=TICK))
    pipeline.run(DAY.isoformat())
    assert "has items" in skip_message(pipeline.instance, TICK, "Asia/Almaty")


def test_re_pulls_stop_at_the_cap_and_follow_the_provider_day(start_simulator, make_pipeline):
    pipeline = make_pipeline(sim=start_simulator(now=BEFORE_SYNC))
    day = DAY.isoformat()
    pipeline.run(day)
    first = late_sync_request(pipeline.instance, TICK, "Asia/Almaty", max_repulls=2)
    pipeline.run(day, tags=first.tags)
    second = late_sync_request(pipeline.instance, TICK, "Asia/Almaty", max_repulls=2)
    assert isinstance(second, dg.RunRequest) and second.run_key != first.run_key
    pipeline.run(day, tags=second.tags)
    assert "after 2 re-pulls" in skip_message(pipeline.instance, TICK, "Asia/Almaty", max_repulls=2)
    # At the provider's midnight yesterday becomes the 20th, which nothing has pulled.
    assert "2026-11-20" in skip_message(
        pipeline.instance, dt.datetime(2026, 11, 21, 0, 0, tzinfo=ALMATY), "Asia/Almaty"
    )


def test_a_failed_re_pull_is_tried_again_and_an_unfinished_one_is_waited_for(
    start_simulator, make_pipeline
):
    pipeline = make_pipeline(sim=start_simulator(now=BEFORE_SYNC))
    day = DAY.isoformat()
    pipeline.run(day)
    first = late_sync_request(pipeline.instance, TICK, "Asia/Almaty")

    # The API is down when the re-pull runs: the run fails and the day stays empty.
    api = pipeline.resources["nova_api"]
    pipeline.resources["nova_api"] = NovaApiResource(
        api_url=f"http://127.0.0.1:{free_port()}/api", max_attempts=2, backoff_base_s=0.01
    )
    failed = pipeline.run(day, tags=first.tags, raise_on_error=False)
    pipeline.resources["nova_api"] = api
    assert not failed.success
    retry = late_sync_request(pipeline.instance, TICK + dt.timedelta(minutes=30), "Asia/Almaty")
    assert isinstance(retry, dg.RunRequest) and retry.run_key != first.run_key

    # While that re-pull has not finished (say, queued behind a backfill), no second one.
    pending = pipeline.instance.create_run_for_job(
        defs.resolve_job_def("call_sms_job"), tags=retry.tags
    )
    assert "queued or running" in skip_message(
        pipeline.instance, TICK + dt.timedelta(hours=1), "Asia/Almaty"
    )
    pipeline.instance.report_run_canceled(pending)

    pipeline.sim.simulator.set_now(TICK)
    last = late_sync_request(pipeline.instance, TICK + dt.timedelta(hours=1), "Asia/Almaty")
    assert isinstance(last, dg.RunRequest) and last.run_key not in (first.run_key, retry.run_key)
    pipeline.run(day, tags=last.tags)
    [(events,)] = pipeline.sql("SELECT count(*) FROM call_sms_events WHERE day = ?", DAY)
    assert events == len(served_items(pipeline.sim.api_url, DAY)) > 0
    assert "has items" in skip_message(
        pipeline.instance, TICK + dt.timedelta(hours=2), "Asia/Almaty"
    )


def test_a_yesterday_the_daily_run_failed_to_pull_is_pulled_again(start_simulator, make_pipeline):
    """The API is down at the daily run's hour for longer than its retries: the run fails
    and yesterday is not stored. The sensor pulls it again rather than leave it for the
    next day's run; a failed run started by hand is not its business."""
    pipeline = make_pipeline(sim=start_simulator(now=TICK))
    day = DAY.isoformat()
    api = pipeline.resources["nova_api"]
    pipeline.resources["nova_api"] = NovaApiResource(
        api_url=f"http://127.0.0.1:{free_port()}/api", max_attempts=2, backoff_base_s=0.01
    )
    by_hand = pipeline.run(day, raise_on_error=False)
    assert not by_hand.success
    assert "not been pulled yet" in skip_message(pipeline.instance, TICK, "Asia/Almaty")

    first = (DAY - dt.timedelta(days=3)).isoformat()
    daily = pipeline.run(first, day, tags=SCHEDULED, raise_on_error=False)
    assert not daily.success
    request = late_sync_request(pipeline.instance, TICK, "Asia/Almaty", max_repulls=2)
    assert isinstance(request, dg.RunRequest)
    assert request.tags == {RANGE_START: day, RANGE_END: day, LATE_SYNC_TAG: day}
    assert daily.run_id in request.run_key

    failed = pipeline.run(day, tags=request.tags, raise_on_error=False)
    assert not failed.success, "the API is still down"
    retry = late_sync_request(pipeline.instance, TICK, "Asia/Almaty", max_repulls=2)
    assert isinstance(retry, dg.RunRequest) and retry.run_key != request.run_key

    pipeline.resources["nova_api"] = api
    pipeline.run(day, tags=retry.tags)
    [(events,)] = pipeline.sql("SELECT count(*) FROM call_sms_events WHERE day = ?", DAY)
    assert events == len(served_items(pipeline.sim.api_url, DAY)) > 0
    assert "has items" in skip_message(pipeline.instance, TICK, "Asia/Almaty", max_repulls=2)


def test_a_yesterday_whose_rollups_another_days_check_stopped_is_pulled_again(
    start_simulator, make_pipeline
):
    """Over 1% of the items of a day the daily run pulls again (late records) break the
    contract: its blocking check stops every day's rollups, and the run fails with
    yesterday's events stored and no cost of it. Yesterday passed its checks, so the sensor
    pulls it again alone; a pull made by hand and not loaded yet is left alone."""
    tick = dt.datetime(2026, 11, 18, 7, 0, tzinfo=ALMATY)
    yesterday, bad_day = dt.date(2026, 11, 17), dt.date(2026, 11, 16)
    pipeline = make_pipeline(
        sim=start_simulator(now=tick, faults={"bad_items": 0.15}), page_size=20
    )
    day = yesterday.isoformat()
    pipeline.run(day, selection=["call_sms_raw_pages"])
    assert skip_message(pipeline.instance, tick, "Asia/Almaty") == (
        f"{day} has items not yet loaded into call_sms_events, call_sms_rejects, "
        "sim_group_membership, sim_daily_cost, group_daily_cost, and no scheduled run of it "
        "failed"
    )

    first = (yesterday - dt.timedelta(days=3)).isoformat()
    daily = pipeline.run(first, day, tags=SCHEDULED, raise_on_error=False)
    severity = {
        e.partition: e.severity.value if not e.passed else "passed"
        for e in daily.get_asset_check_evaluations()
        if e.check_name == "rejects_share"
    }
    assert (severity[bad_day.isoformat()], severity[day]) == ("ERROR", "WARN"), (
        "the simulator's draw of bad items this test is built on"
    )
    assert not daily.success
    [(events,)] = pipeline.sql("SELECT count(*) FROM call_sms_events WHERE day = ?", yesterday)
    assert events > 0
    assert pipeline.sql("SELECT count(*) FROM sim_daily_cost") == [(0,)]
    request = late_sync_request(pipeline.instance, tick, "Asia/Almaty")
    assert isinstance(request, dg.RunRequest) and daily.run_id in request.run_key
    assert request.tags == {RANGE_START: day, RANGE_END: day, LATE_SYNC_TAG: day}
    queued = pipeline.instance.create_run_for_job(
        defs.resolve_job_def("call_sms_job"), tags=request.tags
    )
    assert skip_message(pipeline.instance, tick, "Asia/Almaty") == (
        f"a re-pull of {day} is queued or running"
    )
    pipeline.instance.delete_run(queued.run_id)

    pipeline.run(day, tags=request.tags)
    clean = start_simulator(now=tick)  # the same fleet without bad items: the reference
    cost, count = independent_costs(clean.api_url, yesterday)
    [(events,)] = pipeline.sql("SELECT count(*) FROM call_sms_events WHERE day = ?", yesterday)
    assert events == sum(count.values())
    for table in ("sim_daily_cost", "group_daily_cost"):
        by_day = pipeline.sql(f"SELECT day, sum(cost_eur) FROM {table} GROUP BY day")
        assert by_day == [(yesterday, sum(cost.values()))], table
    assert (
        skip_message(pipeline.instance, tick, "Asia/Almaty")
        == f"{day} has items, loaded into every asset"
    )


def test_a_yesterday_a_blocking_check_stopped_is_not_pulled_again(start_simulator, make_pipeline):
    """Over 1% of yesterday's items break the contract: the rejects check stops the rollups
    and the daily run fails. A re-pull would get the same items and stop at the same check."""
    pipeline = make_pipeline(sim=start_simulator(now=TICK, faults={"bad_items": 1.0}), page_size=20)
    day = DAY.isoformat()
    daily = pipeline.run(day, tags=SCHEDULED, raise_on_error=False)
    assert not daily.success
    assert pipeline.sql("SELECT count(*) FROM sim_daily_cost") == [(0,)]
    assert skip_message(pipeline.instance, TICK, "Asia/Almaty") == (
        f"{day} failed the blocking check rejects_share in run {daily.run_id}: a re-pull would "
        "stop at the same check. Its result says what is wrong; the next daily run pulls the "
        "day again."
    )


def test_a_daily_run_that_died_is_left_to_dagsters_retry_of_it(start_simulator, make_pipeline):
    """A daily run whose process died is re-executed by Dagster (dagster.yaml's run_retries,
    run in a real `dagster dev` by tests/hardening/test_crash.py): while that retry is
    coming, the sensor starts no second run of the day; once none is, it does."""
    pipeline = make_pipeline(sim=start_simulator(now=TICK))
    day = DAY.isoformat()
    died = pipeline.instance.create_run_for_job(
        defs.resolve_job_def("call_sms_job"),
        tags={**SCHEDULED, RANGE_START: day, RANGE_END: day},
    )
    pipeline.instance.report_run_failed(died)
    pipeline.instance.add_run_tags(died.run_id, {WILL_RETRY: "true"})
    assert skip_message(pipeline.instance, TICK, "Asia/Almaty") == (
        f"run {died.run_id} of {day} died and Dagster re-executes it (run_retries)"
    )
    pipeline.instance.add_run_tags(died.run_id, {WILL_RETRY: "false"})
    request = late_sync_request(pipeline.instance, TICK, "Asia/Almaty")
    assert isinstance(request, dg.RunRequest) and died.run_id in request.run_key


def test_a_yesterday_still_not_pulled_after_the_cap_waits_for_the_next_daily_run(
    start_simulator, make_pipeline
):
    pipeline = make_pipeline(sim=start_simulator(now=TICK))
    pipeline.resources["nova_api"] = NovaApiResource(
        api_url=f"http://127.0.0.1:{free_port()}/api", max_attempts=1
    )
    day = DAY.isoformat()
    pipeline.run(day, tags=SCHEDULED, raise_on_error=False)
    request = late_sync_request(pipeline.instance, TICK, "Asia/Almaty", max_repulls=1)
    pipeline.run(day, tags=request.tags, raise_on_error=False)
    assert skip_message(pipeline.instance, TICK, "Asia/Almaty", max_repulls=1) == (
        f"{day} is still not pulled after 1 re-pull; the next daily run pulls it again"
    )


def test_the_sensor_is_on_by_default_and_asks_the_instance():
    sensor = defs.resolve_sensor_def("call_sms_late_sync")
    assert sensor.default_status == dg.DefaultSensorStatus.RUNNING
    with dg.DagsterInstance.ephemeral() as instance:
        result = sensor(dg.build_sensor_context(instance=instance))
    assert isinstance(result, dg.SkipReason) and "not been pulled yet" in result.skip_message


def test_the_daemon_pulls_an_empty_yesterday_again(tmp_path):
    """Through a real `dagster dev`: yesterday (by the wall clock) is pulled before the
    provider's sync; once the sync has run, the sensor's first tick fills the day."""
    midnight = dt.datetime.combine(dt.datetime.now(ALMATY).date(), dt.time(), ALMATY)
    if (wait := (midnight + dt.timedelta(days=1) - dt.datetime.now(ALMATY)).total_seconds()) < 300:
        time.sleep(wait + 1)  # yesterday must not change while the test runs
        midnight += dt.timedelta(days=1)
    yesterday = (midnight - dt.timedelta(days=1)).date().isoformat()
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster.yaml", home / "dagster.yaml")
    before_sync = (midnight + dt.timedelta(hours=3)).isoformat()
    with simulator_process(["--sims", "30", "--groups", "0", "--now", before_sync]) as api_url:
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "NOVA_API_URL": api_url,
            "NOVA_DATA_DIR": str(tmp_path / "data"),
        }
        command = ["dagster", "asset", "materialize", "-m", "nova_pipeline.definitions"]
        subprocess.run(
            [sys.executable, "-m", *command, "--select", "*", "--partition", yesterday],
            env=env,
            check=True,
            capture_output=True,
        )
        warehouse = str(tmp_path / "data" / "nova.duckdb")
        with duckdb.connect(warehouse, read_only=True) as con:
            assert con.execute("SELECT count(*) FROM call_sms_events").fetchall() == [(0,)]
        after_sync = (midnight + dt.timedelta(hours=5)).isoformat()
        clock = api_url.removesuffix("/api") + "/_simulator/clock"
        httpx.post(clock, json={"now": after_sync}).raise_for_status()
        with dagster_dev(env, port=free_port()), dg.DagsterInstance.from_config(str(home)) as db:
            deadline = time.monotonic() + 300
            while time.monotonic() < deadline:
                runs = db.get_runs(dg.RunsFilter(tags={LATE_SYNC_TAG: yesterday}))
                if runs and runs[0].is_finished:
                    break
                time.sleep(2)
        assert [run.status for run in runs] == [dg.DagsterRunStatus.SUCCESS]
        with duckdb.connect(warehouse, read_only=True) as con:
            [(events,)] = con.execute("SELECT count(*) FROM call_sms_events").fetchall()
        day = dt.date.fromisoformat(yesterday)
        assert events == len(served_items(api_url, day)) > 0
