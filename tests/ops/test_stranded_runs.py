"""A run left "started" by a process that died (`make demo` killed mid-write) is marked
failed by the stranded_runs sensor, so the runs queued behind it on the warehouse's pool
start. Before, every later run of `make ui` waited in its queue for ever."""

from __future__ import annotations

import datetime as dt
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from nova_pipeline.demo import DEMO_GROUPS, SIMULATOR_ARGS
from nova_pipeline.schedules import RANGE_END
from nova_pipeline.stranded_runs import (
    PID_REUSE_SLACK_S,
    SENSOR_NAME,
    build_stranded_runs_sensor,
    process_gone,
)
from nova_pipeline.ui import launch_backfill, wait_for_backfill
from nova_pipeline.warehouse import TABLES
from nova_pipeline.warehouse.write import PAUSE_DIR_ENV
from tests.conftest import dagster_dev_stack, served_items
from tests.test_demo import demo_env

NONE_LEFT = "no started run whose process has ended"
DAY = "2026-11-18"


@contextmanager
def demo_paused_in_its_write(tmp_path: Path) -> Iterator[tuple[subprocess.Popen, dict[str, str]]]:
    """`make demo`, waiting inside its events write (after the delete) until killed; killed
    on the way out if the test has not."""
    pause = tmp_path / "pause"
    pause.mkdir()
    (pause / "pause").write_text("call_sms_events")
    env = {**demo_env(tmp_path), PAUSE_DIR_ENV: str(pause)}
    with open(tmp_path / "demo.log", "w") as log:
        demo = subprocess.Popen(
            [sys.executable, "-m", "nova_pipeline.demo"], env=env, stdout=log, stderr=log
        )
    try:
        deadline = time.monotonic() + 300
        while not (pause / "paused").exists() or not (pause / "paused").read_text():
            assert demo.poll() is None, (tmp_path / "demo.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the demo did not reach its events write"
            time.sleep(0.2)
        assert int((pause / "paused").read_text()) == demo.pid, "the demo runs its job itself"
        yield demo, env
    finally:
        demo.kill()
        demo.wait()


def tick(instance: dg.DagsterInstance, cursor: str | None) -> tuple[str, str | None]:
    """One evaluation of the sensor, as the daemon makes it: what it said, its new cursor."""
    context = dg.build_sensor_context(instance=instance, cursor=cursor, sensor_name=SENSOR_NAME)
    said = build_stranded_runs_sensor()(context)
    return said.skip_message, context.cursor


def failure_message(instance: dg.DagsterInstance, run_id: str) -> str:
    (failure,) = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)
    return failure.dagster_event.message


def test_a_run_whose_process_was_killed_is_failed_at_the_second_look_and_a_live_one_is_left(
    tmp_path,
):
    with (
        demo_paused_in_its_write(tmp_path) as (demo, env),
        dg.DagsterInstance.from_config(env["DAGSTER_HOME"]) as instance,
    ):
        (run,) = instance.get_runs()
        cursor = None
        for _ in range(2):
            said, cursor = tick(instance, cursor)
            assert said == NONE_LEFT, "the demo still runs"
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED

        demo.send_signal(signal.SIGKILL)  # not reaped yet: a zombie has ended too
        time.sleep(0.5)
        said, cursor = tick(instance, cursor)
        assert run.run_id in said and "next tick" in said
        assert json.loads(cursor) == [run.run_id]
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.STARTED

        said, cursor = tick(instance, cursor)
        assert said == f"marked failed: {run.run_id}"
        assert instance.get_run_by_id(run.run_id).status == dg.DagsterRunStatus.FAILURE
        message = failure_message(instance, run.run_id)
        assert f"(pid {demo.pid}) ended without recording its end" in message
        assert "holds what it held before until a new run materializes it" in message

        demo.wait()
        assert tick(instance, cursor) == (NONE_LEFT, "[]")
        assert len(instance.all_logs(run.run_id, of_type=dg.DagsterEventType.RUN_FAILURE)) == 1


def test_a_process_counts_as_ended_once_the_machine_has_started_since_it_was_seen():
    """After a power cut the pid a run logged may be another process's: the machine started
    after the run logged it, so the run's own process has ended."""
    assert not process_gone(os.getpid(), time.time())
    assert process_gone(os.getpid(), since=0.0)


def test_a_pid_held_by_a_process_started_after_the_run_logged_it_counts_as_ended():
    """Pids are handed out again (32,768 of them on many Linux systems): a live process that
    got the run's pid after the run logged it is not the run's, and must not keep the run
    "started" for as long as it lives."""
    if not Path("/proc/self/stat").exists():
        pytest.skip("a process's start time is read from Linux's /proc")
    other = subprocess.Popen(["sleep", "60"])
    try:
        logged_before_it = time.time() - PID_REUSE_SLACK_S - 30
        assert process_gone(other.pid, since=logged_before_it)
        assert not process_gone(other.pid, since=time.time())
    finally:
        other.kill()
        other.wait()


def test_runs_launched_elsewhere_are_left_to_their_launcher():
    """Another run launcher's runs may be processes on other machines: a pid says nothing."""
    with dg.DagsterInstance.ephemeral() as instance:
        said, cursor = tick(instance, None)
    assert said.startswith("runs are launched by SyncInMemoryRunLauncher,")
    assert cursor is None


@pytest.mark.timeout(900)
def test_a_run_cut_off_with_the_machine_is_failed_and_re_executed_at_the_next_start(tmp_path):
    """Every process of `dagster dev` SIGKILLed while a backfill's run writes a day, as a
    power cut would: no code server is left to fail the run. At the next start the sensor
    fails it, Dagster re-executes it from the step that died, and the backfill completes."""
    pause = tmp_path / "pause"
    pause.mkdir()
    (pause / "pause").write_text("call_sms_events")
    sim = list(SIMULATOR_ARGS)
    with dagster_dev_stack(tmp_path, sim, **{PAUSE_DIR_ENV: str(pause)}) as (url, _, _):
        backfill = launch_backfill(url, list(TABLES), [DAY])
        deadline = time.monotonic() + 300
        while not (pause / "paused").exists() or not (pause / "paused").read_text():
            assert time.monotonic() < deadline, "no run reached the events write"
            time.sleep(0.2)
        worker = int((pause / "paused").read_text())
        os.killpg(os.getpgid(worker), signal.SIGKILL)
    (pause / "pause").unlink()

    with dagster_dev_stack(tmp_path, sim) as (url, api_url, warehouse):
        state = wait_for_backfill(url, backfill)
        assert state["status"] == "COMPLETED_SUCCESS", state
        with duckdb.connect(str(warehouse), read_only=True) as con:
            (events,) = con.execute(
                "SELECT count(*) FROM call_sms_events WHERE day = ?", [DAY]
            ).fetchone()
        served = len({item["sid"] for item in served_items(api_url, dt.date.fromisoformat(DAY))})
    assert events == served > 0
    with dg.DagsterInstance.from_config(str(tmp_path / "dagster_home")) as instance:
        records = sorted(
            instance.get_run_records(dg.RunsFilter(tags={"dagster/backfill": backfill})),
            key=lambda record: record.create_timestamp,
        )
        cut, again = (record.dagster_run for record in records)
        assert cut.status == dg.DagsterRunStatus.FAILURE
        assert again.status == dg.DagsterRunStatus.SUCCESS
        assert f"(pid {worker}) ended without recording its end" in failure_message(
            instance, cut.run_id
        )
        assert again.parent_run_id == cut.run_id, "re-executed from the run cut off"


@pytest.mark.timeout(900)
def test_make_ui_runs_again_after_a_killed_demo_left_its_run_started(tmp_path):
    with demo_paused_in_its_write(tmp_path) as (demo, env):
        demo.send_signal(signal.SIGKILL)
    home = env["DAGSTER_HOME"]
    with dg.DagsterInstance.from_config(home) as instance:
        (killed,) = instance.get_runs()
    assert killed.status == dg.DagsterRunStatus.STARTED
    day = dt.date.fromisoformat(killed.tags[RANGE_END])

    with dagster_dev_stack(
        tmp_path, list(SIMULATOR_ARGS), DAGSTER_HOME=home, NOVA_GROUPS=DEMO_GROUPS
    ) as (url, api_url, warehouse):
        with dg.DagsterInstance.from_config(home) as instance:
            deadline = time.monotonic() + 300
            while instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.STARTED:
                assert time.monotonic() < deadline, "the killed demo's run is still started"
                time.sleep(2)
            assert instance.get_run_by_id(killed.run_id).status == dg.DagsterRunStatus.FAILURE
            assert f"(pid {demo.pid})" in failure_message(instance, killed.run_id)

        state = wait_for_backfill(url, launch_backfill(url, list(TABLES), [day.isoformat()]))
        assert state["status"] == "COMPLETED_SUCCESS", state
        with duckdb.connect(str(warehouse), read_only=True) as con:
            (events,) = con.execute(
                "SELECT count(*) FROM call_sms_events WHERE day = ?", [day]
            ).fetchone()
        assert events == len({item["sid"] for item in served_items(api_url, day)}) > 0
        with dg.DagsterInstance.from_config(home) as instance:
            said = [e.message for e in instance.all_logs(killed.run_id)]
        assert not [m for m in said if "retry" in m], "make ui's daemon cannot re-execute it"
