"""End to end through a real `dagster dev`: backfills launched over GraphQL, as the UI does."""

from __future__ import annotations

import datetime as dt
import fcntl
import itertools
import math
import os
import re
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from nova_pipeline.checks import ASSET_CHECKS
from nova_pipeline.settings import load_settings
from nova_pipeline.simulator.process import free_port, simulator_process
from nova_pipeline.ui import (
    FINISHED_RUN,
    REPO,
    _check_port_free,
    _warehouse_check,
    graphql,
    launch_backfill,
    project_home,
    wait_for_backfill,
)
from nova_pipeline.warehouse import TABLES, ensure_schema
from tests.conftest import (
    dagster_dev_stack,
    descendants,
    independent_costs,
    index_page,
    running,
    served_items,
    wait_until_a_page_lands,
    warehouse_held,
)

DAYS_PER_RUN = 4
FIRST = dt.date(2026, 11, 9)


def launch(url: str, days: list[dt.date]) -> str:
    return launch_backfill(url, list(TABLES), [d.isoformat() for d in days])


LAUNCH_RUN = """
mutation Launch($params: ExecutionParams!) {
  launchRun(executionParams: $params) {
    __typename
    ... on LaunchRunSuccess { run { id } }
  }
}"""
RUN_STATUS = """
query Status($id: ID!) {
  runOrError(runId: $id) { ... on Run { id status startTime endTime } }
}"""
TERMINATE = """
mutation Terminate($id: String!) {
  terminateRun(runId: $id) { __typename }
}"""


CHECK_STATUSES = """
query Checks($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode {
      assetChecksOrError {
        ... on AssetChecks {
          checks {
            name
            partitionStatuses {
              ... on AssetCheckTimePartitionStatuses { ranges { startKey endKey status } }
            }
          }
        }
      }
    }
  }
}"""


def check_partition_statuses(
    url: str, keys: list[dg.AssetCheckKey]
) -> dict[dg.AssetCheckKey, list[tuple[str, str, str]]]:
    """Each check's per-day status ranges, as the UI's partition view of the check reads them."""
    statuses = {}
    for asset in {key.asset_key for key in keys}:
        node = graphql(url, CHECK_STATUSES, key={"path": asset.path})["assetNodeOrError"]
        for check in node["assetChecksOrError"]["checks"]:
            key = dg.AssetCheckKey(asset, check["name"])
            if key in keys:
                ranges = check["partitionStatuses"]["ranges"]
                statuses[key] = [(r["startKey"], r["endKey"], r["status"]) for r in ranges]
    return statuses


def launch_run(url: str, params: dict) -> str:
    launched = graphql(url, LAUNCH_RUN, params=params)["launchRun"]
    assert launched["__typename"] == "LaunchRunSuccess", launched
    return launched["run"]["id"]


def launch_day_run(url: str, day: dt.date) -> str:
    """A run of the job for one day, outside any backfill (as the schedule or the
    late-sync sensor starts one)."""
    params = {
        "selector": {
            "repositoryLocationName": "nova_pipeline",
            "repositoryName": "__repository__",
            "jobName": "call_sms_job",
        },
        "executionMetadata": {"tags": [{"key": "dagster/partition", "value": day.isoformat()}]},
    }
    return launch_run(url, params)


UI_CHECKS = """
query UiChecks($key: AssetKeyInput!) {
  assetNodeOrError(assetKey: $key) {
    ... on AssetNode {
      jobNames
      assetChecksOrError { ... on AssetChecks { checks { name canExecuteIndividually jobNames } } }
    }
  }
}"""


def execute_all_checks(url: str, asset: str) -> str:
    """Launch an asset's checks as the UI's "Execute all" button does in Dagster 1.13 (its
    checks page and the asset graph's sidebar): the checks' first common job, no asset, no
    partition, the checks that can run alone."""
    node = graphql(url, UI_CHECKS, key={"path": [asset]})["assetNodeOrError"]
    checks = node["assetChecksOrError"]["checks"]
    common = [job for job in checks[0]["jobNames"] if all(job in c["jobNames"] for c in checks)]
    launchable = [c["name"] for c in checks if c["canExecuteIndividually"] == "CAN_EXECUTE"]
    params = {
        "mode": "default",
        "executionMetadata": {},
        "runConfigData": "{}",
        "selector": {
            "jobName": (common or node["jobNames"])[0],
            "repositoryLocationName": "nova_pipeline",
            "repositoryName": "__repository__",
            "assetSelection": [],
            "assetCheckSelection": [
                {"assetKey": {"path": [asset]}, "name": name} for name in launchable
            ],
        },
    }
    return launch_run(url, params)


def wait_for_run(url: str, run_id: str, timeout_s: float = 600) -> dict:
    deadline = time.monotonic() + timeout_s
    while True:
        run = graphql(url, RUN_STATUS, id=run_id)["runOrError"]
        if run["status"] in FINISHED_RUN:
            return run
        assert time.monotonic() < deadline, run
        time.sleep(1)


def assert_one_run_at_a_time(runs: list[dict]) -> None:
    """DuckDB takes one writer: no run may start before the one before it has ended."""
    spans = sorted((run["startTime"], run["endTime"]) for run in runs)
    for (_, ended), (started, _) in itertools.pairwise(spans):
        assert started >= ended, spans


@pytest.fixture
def stack(tmp_path: Path):
    args = [
        "--seed",
        "3",
        "--sims",
        "60",
        "--groups",
        "3",
        "--events-per-sim-day",
        "10",
        "--now",
        "2026-11-20T12:00:00+05:00",
    ]
    with dagster_dev_stack(
        tmp_path,
        args,
        NOVA_GROUPS="1=Trackers,2=Vans,3=Meters",
        NOVA_BACKFILL_DAYS_PER_RUN=str(DAYS_PER_RUN),
        NOVA_PAGE_SIZE="200",
    ) as (url, api_url, warehouse):
        yield url, api_url, tmp_path / "dagster_home", warehouse


@pytest.mark.timeout(1200)
def test_backfills_launched_over_graphql_fill_every_day_and_queue_on_the_pool(stack):
    url, api_url, home, warehouse = stack
    days = [FIRST + dt.timedelta(days=i) for i in range(10)]

    state = wait_for_backfill(url, launch(url, days))
    assert state["status"] == "COMPLETED_SUCCESS", state
    assert len(state["runs"]) == math.ceil(len(days) / DAYS_PER_RUN)
    assert {run["status"] for run in state["runs"]} == {"SUCCESS"}
    # The first runs of a fresh instance too: its pool limit is not in the database yet.
    assert_one_run_at_a_time(state["runs"])
    backfill_runs = {run["id"] for run in state["runs"]}

    with dg.DagsterInstance.from_config(str(home)) as instance:
        for key in TABLES:
            done = instance.get_materialized_partitions(dg.AssetKey(key))
            assert {d.isoformat() for d in days} <= done, key
        for check_key in (key for check in ASSET_CHECKS for key in check.check_keys):
            history = instance.event_log_storage.get_asset_check_execution_history(
                check_key, limit=100
            )
            ours = {r.partition: r.status.value for r in history if r.run_id in backfill_runs}
            assert ours == {d.isoformat(): "SUCCEEDED" for d in days}, check_key
    # What the UI shows for each check: every day of the backfill passed.
    keys = [key for check in ASSET_CHECKS for key in check.check_keys]
    statuses = check_partition_statuses(url, keys)
    assert set(statuses) == set(keys)
    for key, ranges in statuses.items():
        assert ranges == [(days[0].isoformat(), days[-1].isoformat(), "SUCCEEDED")], key

    with duckdb.connect(str(warehouse), read_only=True) as con:
        for day in days:
            stored = dict(
                con.execute(
                    "SELECT sim_id, cost_eur FROM sim_daily_cost WHERE day = ?", [day]
                ).fetchall()
            )
            assert stored == independent_costs(api_url, day)[0], day
            (groups_total,) = con.execute(
                "SELECT sum(cost_eur) FROM group_daily_cost WHERE day = ?", [day]
            ).fetchone()
            assert groups_total == sum(stored.values())

    overlapping = [launch(url, days[:6]), launch(url, days[3:])]
    single = launch_day_run(url, days[4])
    states = [wait_for_backfill(url, backfill_id) for backfill_id in overlapping]
    single_run = wait_for_run(url, single)
    assert single_run["status"] == "SUCCESS", single_run
    for state in states:
        # Every run succeeds; a backfill whose partitions the other one re-materialized may
        # stay REQUESTED in Dagster 1.13 (see wait_for_backfill), which is not a failure.
        assert state["status"] == "COMPLETED_SUCCESS" or state.get("stalled"), state
        assert {run["status"] for run in state["runs"]} == {"SUCCESS"}
    assert [len(s["runs"]) for s in states] == [2, 2]
    # A run outside the backfills waits for the pool like theirs.
    assert_one_run_at_a_time([single_run, *(run for s in states for run in s["runs"])])
    with duckdb.connect(str(warehouse), read_only=True) as con:
        assert con.execute(
            "SELECT count(*) - count(DISTINCT sid) FROM call_sms_events"
        ).fetchone() == (0,)
        assert con.execute("SELECT count(DISTINCT day) FROM sim_daily_cost").fetchone() == (10,)

    # The UI's "Execute all" of an asset's checks names no partition: each check judges
    # every stored day in one evaluation.
    runs = {asset: execute_all_checks(url, asset.path[0]) for asset in {k.asset_key for k in keys}}
    for asset, run_id in runs.items():
        assert wait_for_run(url, run_id)["status"] == "SUCCESS", asset
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for key in keys:
            history = instance.event_log_storage.get_asset_check_execution_history(key, limit=10)
            [record] = [r for r in history if r.run_id == runs[key.asset_key]]
            evaluation = record.event.dagster_event.event_specific_data
            assert (record.partition, record.status.value) == (None, "SUCCEEDED"), key
            assert evaluation.description == "passed for all days", key
            assert evaluation.metadata["days_checked"].value == "all days", key


UI = [sys.executable, "-m", "nova_pipeline.ui"]
SERVE = [*UI, "--api"]


@contextmanager
def serving(env: dict[str, str], log: Path, command: list[str] = SERVE) -> Iterator[str]:
    """`make serve`'s process (or `make ui`'s), its output in `log`, until it prints its
    banner (yielded); stopped as Ctrl-C would, and checked to exit cleanly."""
    with open(log, "w") as out:
        proc = subprocess.Popen(command, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        yield banner(proc, log)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=90)
    assert proc.returncode == 0, log.read_text()[-3000:]


def banner(proc: subprocess.Popen, log: Path) -> str:
    """The line `make ui` or `make serve` prints once its UI is up."""
    deadline = time.monotonic() + 180
    while "Dagster UI at" not in log.read_text():
        assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
        time.sleep(0.5)
    return next(line for line in log.read_text().splitlines() if "Dagster UI at" in line)


def test_make_serve_runs_the_pipeline_on_the_api_it_is_given_in_an_instance_of_its_own(tmp_path):
    """`make serve` (the real API): no simulator of its own, the settings checked before
    `dagster dev` starts, the project's dagster.yaml in its instance (an operator's own
    kept), a run reaching the API NOVA_API_URL names with its token, and one request at
    start that says under the banner whether the API answered and took the token."""
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOVA_")}
    env |= {"DAGSTER_HOME": str(home), "NOVA_DATA_DIR": str(tmp_path / "data")}
    refused = subprocess.run(SERVE, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "NOVA_API_URL is not set" in refused.stderr
    bad = {**env, "NOVA_API_URL": "http://127.0.0.1:9/api", "NOVA_GROUPS": "one"}
    refused = subprocess.run(SERVE, env=bad, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "NOVA_GROUPS: 'one' is not" in refused.stderr
    homeless = {k: v for k, v in bad.items() if k not in ("DAGSTER_HOME", "NOVA_GROUPS")}
    refused = subprocess.run(SERVE, env=homeless, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "DAGSTER_HOME is not set" in refused.stderr
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "dagster.yaml").write_text("telemetry:\n  enabld: false\n")
    typo = {**homeless, "DAGSTER_HOME": str(broken)}
    refused = subprocess.run(SERVE, env=typo, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2, refused.stderr
    assert refused.stderr.startswith(f"{broken / 'dagster.yaml'} cannot be used: "), refused.stderr
    assert 'unexpected config entry "enabld" at path root:telemetry' in refused.stderr
    assert "Traceback" not in refused.stderr
    assert not home.exists(), "nothing started"

    day = dt.date(2026, 11, 18)
    token = "serve-token"
    sim = ["--sims", "40", "--groups", "0", "--token", token, "--now", "2026-11-20T12:00+05:00"]
    log = tmp_path / "serve.log"
    with simulator_process(sim) as api_url:
        env |= {"NOVA_API_URL": api_url, "NOVA_API_TOKEN": token, "DAGSTER_PORT": str(free_port())}
        with serving(env, log) as banner:
            assert f"for {api_url}; instance in {home}, warehouse {tmp_path / 'data'}" in banner
            checked = api_check_line(log)
            assert start_lines(log)[2] == NOTHING_RECORDED
            assert re.fullmatch(
                rf"API check: {re.escape(api_url)} answered a query of \d{{4}}-\d\d-\d\d, "
                "its token accepted\\.",
                checked,
            ), checked
            url = banner.split()[3]
            assert (home / "dagster.yaml").read_text() == (REPO / "dagster.yaml").read_text()
            run = wait_for_run(url, launch_day_run(url, day))
            assert run["status"] == "SUCCESS", log.read_text()[-3000:]
        with duckdb.connect(str(tmp_path / "data" / "nova.duckdb"), read_only=True) as con:
            [(events,)] = con.execute("SELECT count(*) FROM call_sms_events").fetchall()
        assert events == len(served_items(api_url, day, token=token)) > 0
        assert token not in log.read_text()
        assert "is kept as it is" not in log.read_text(), "a fresh instance gets the project's"
        assert "superseded" not in log.read_text(), "no advice to run a command not installed"

    own = "telemetry:\n  enabled: false\n"
    (home / "dagster.yaml").write_text(own)
    warehouse = tmp_path / "data" / "nova.duckdb"
    warehouse.rename(warehouse.with_name("moved.duckdb"))
    with simulator_process(sim) as api_url:
        wrong = {**env, "NOVA_API_URL": api_url, "NOVA_API_TOKEN": "expired-token"}
        with serving(wrong, log):
            assert start_lines(log)[2] == (
                "Warehouse check: this Dagster instance has call_sms_raw_pages materialized for "
                f"1 day that the warehouse {warehouse} holds no page of: 2026-11-18. The UI "
                "shows them as materialized and the daily schedule's catch-up of missed days "
                "skips them: the file was replaced or deleted, or NOVA_DUCKDB_PATH "
                "(NOVA_DATA_DIR) now points at another one. Point it back, or backfill those "
                "days with every asset selected."
            )
            assert (home / "dagster.yaml").read_text() == own
            assert "dagster.yaml is kept as it is; it differs from the project's" in log.read_text()
            assert api_check_line(log) == (
                "API check (one request, at most 2 attempts) failed; runs will fail the same way "
                "until this is fixed: NovaConnect refused the token with HTTP 401 (authorization "
                "required: invalid or missing token): check NOVA_API_TOKEN (and NOVA_AUTH_HEADER "
                "/ NOVA_AUTH_SCHEME)"
            )
        assert "expired-token" not in log.read_text()


def start_lines(log: Path) -> list[str]:
    """The lines `make serve` or `make ui` prints from its banner on."""
    lines = log.read_text().splitlines()
    return lines[next(i for i, line in enumerate(lines) if "Dagster UI at" in line) :]


def api_check_line(log: Path) -> str:
    """The line `make serve` prints under its banner: what one request to the API gave."""
    return start_lines(log)[1]


NOTHING_RECORDED = "Warehouse check: this instance records no day as pulled yet."


def test_the_start_says_whether_the_warehouse_holds_every_day_the_instance_records(tmp_path):
    """Under `make serve`'s and `make ui`'s banner: the UI's partitions, the freshness
    checks and the schedule's catch-up read the instance, so after the warehouse file was
    deleted or NOVA_DUCKDB_PATH changed they would show its days as in until the first
    pull warned, which may be hours away."""
    home = project_home(tmp_path / "home")
    settings = load_settings({"NOVA_DATA_DIR": str(tmp_path / "data")})
    path = settings.duckdb_path.resolve()
    assert _warehouse_check(settings, home) == NOTHING_RECORDED
    with dg.DagsterInstance.from_config(str(home)) as instance:
        for day in ("2026-11-14", "2026-11-15", "2026-11-17"):
            pulled = dg.AssetMaterialization("call_sms_raw_pages", partition=day)
            instance.report_runless_asset_event(pulled)

    def lacking(days: str, spans: str) -> str:
        return (
            f"Warehouse check: this Dagster instance has call_sms_raw_pages materialized for "
            f"{days} that the warehouse {path} holds no page of: {spans}. The UI shows them as "
            "materialized and the daily schedule's catch-up of missed days skips them: the "
            "file was replaced or deleted, or NOVA_DUCKDB_PATH (NOVA_DATA_DIR) now points at "
            "another one. Point it back, or backfill those days with every asset selected."
        )

    every_day = lacking("3 days", "2026-11-14..2026-11-15, 2026-11-17")
    assert _warehouse_check(settings, home) == every_day, "no file"
    path.parent.mkdir()
    duckdb.connect(str(path)).close()
    assert _warehouse_check(settings, home) == every_day, "a file with no tables"
    with duckdb.connect(str(path)) as con:
        ensure_schema(con)
        index_page(con, dt.date(2026, 11, 14), 5)
        index_page(con, dt.date(2026, 11, 17), 0)
    assert _warehouse_check(settings, home) == lacking("1 day", "2026-11-15")
    with duckdb.connect(str(path)) as con:
        index_page(con, dt.date(2026, 11, 15), 3)
    assert _warehouse_check(settings, home) == (
        f"Warehouse check: {path} holds a pull of each of the 3 days this instance records "
        "as pulled."
    )
    with warehouse_held(path, read_only=False):
        said = _warehouse_check(settings, home)
    assert said.startswith(f"Warehouse check not made: {path} could not be read (IO Error: "), said
    assert "Could not set lock on file" in said, said


def test_make_ui_names_its_instance_and_starts_with_no_warning_the_user_cannot_act_on(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOVA_") and k != "DAGSTER_HOME"}
    env |= {"NOVA_DATA_DIR": str(tmp_path / "data"), "DAGSTER_PORT": str(free_port())}
    refused = subprocess.run(UI, env=env, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "DAGSTER_HOME is not set" in refused.stderr

    home = tmp_path / "home"
    no_port = {**env, "DAGSTER_HOME": str(home), "DAGSTER_PORT": "30OO"}
    refused = subprocess.run(UI, env=no_port, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2
    assert refused.stderr == "DAGSTER_PORT: '30OO' is not a port number (1-65535)\n"
    bad = {**env, "DAGSTER_HOME": str(home), "NOVA_GROUPS": "one"}
    refused = subprocess.run(UI, env=bad, capture_output=True, text=True, timeout=120)
    assert refused.returncode == 2 and "NOVA_GROUPS: 'one' is not" in refused.stderr
    assert "Dagster UI at" not in refused.stdout
    log = tmp_path / "ui.log"
    with serving({**env, "DAGSTER_HOME": str(home)}, log, UI) as banner:
        assert f"; instance in {home}; Ctrl-C stops both." in banner
        assert start_lines(log)[1] == NOTHING_RECORDED
        assert "(simulator at http://127.0.0.1:" in banner
    assert "superseded" not in log.read_text(), log.read_text()[-3000:]


def test_a_second_make_ui_on_the_same_instance_or_port_is_refused_at_once(tmp_path):
    """Two daemons on one instance would both run its schedule, sensors and queue (Dagster
    logs "multiple daemon processes ... not supported"); a second `dagster dev` on a taken
    port would fail in its log only while the banner pointed at the first one's UI."""
    port = free_port()
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOVA_")}
    env |= {"NOVA_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(home)}
    log = tmp_path / "ui.log"
    with serving({**env, "DAGSTER_PORT": str(port)}, log, UI):
        same_home = {**env, "DAGSTER_PORT": str(free_port())}
        refused = subprocess.run(UI, env=same_home, capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2, refused.stderr
        said = refused.stderr.strip().splitlines()[-1]
        assert said.startswith(f"the instance {home} is in use by another `make ui`")
        holder = said.split("(pid ")[1].split(")")[0]
        assert b"nova_pipeline.ui" in Path(f"/proc/{holder}/cmdline").read_bytes()

        same_port = {**env, "DAGSTER_HOME": str(tmp_path / "other"), "DAGSTER_PORT": str(port)}
        refused = subprocess.run(UI, env=same_port, capture_output=True, text=True, timeout=120)
        assert refused.returncode == 2, refused.stderr
        assert (
            refused.stderr.strip()
            .splitlines()[-1]
            .startswith(f"port {port} on 127.0.0.1 is in use")
        )
        assert "DAGSTER_PORT" in refused.stderr and "Dagster UI at" not in refused.stdout
    assert "multiple daemon processes" not in log.read_text(), log.read_text()[-3000:]
    with open(home / ".nova_ui.lock") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)  # released with the process


def assert_all_end(started: dict[int, str], after: str) -> None:
    """Every process in `started` ends within 90 s (`after` says what should have ended them)."""
    deadline = time.monotonic() + 90
    while (left := [c[:90] for pid, c in started.items() if running(pid)]) and (
        time.monotonic() < deadline
    ):
        time.sleep(0.5)
    assert not left, f"still running after {after}: {left}"


def kill_all(proc: subprocess.Popen, started: dict[int, str]) -> None:
    """What a failed test left running."""
    proc.kill()
    for pid in started:
        if running(pid):
            os.kill(pid, signal.SIGKILL)


STOPS = {
    "terminal-closed": (signal.SIGHUP, "make ui", True, 0),
    "killed": (signal.SIGKILL, "make ui", True, -signal.SIGKILL),
    "ctrl-c-while-starting": (signal.SIGINT, "make ui", False, 130),
    "webserver-died": (signal.SIGKILL, "dagster_webserver", True, 1),
}
"""What stops `make ui`: a signal, to it or to the process named, once its UI is up or
before; the exit code it ends with."""


@pytest.mark.parametrize("stop", list(STOPS))
def test_make_ui_leaves_nothing_running_however_it_is_stopped(tmp_path, stop):
    """Closing the terminal sends `make ui` SIGHUP, which never reaches `dagster dev`, in a
    session of its own: `make ui` ended at once, and `dagster dev` ran on, its daemon running
    the schedule and its webserver holding the port (seen here). Killed outright, `make ui`
    can stop nothing itself: the kernel stops what it started. Ctrl-C before the UI is up
    stops what has started so far, in one line rather than a traceback. A webserver that
    dies takes `dagster dev` with it, and `make ui` went on holding the instance and the
    simulator under a banner naming a UI gone."""
    how, target, once_up, exit_code = STOPS[stop]
    port = free_port()
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOVA_")}
    env |= {"NOVA_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(home)}
    log = tmp_path / "ui.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            UI, env={**env, "DAGSTER_PORT": str(port)}, stdout=out, stderr=subprocess.STDOUT
        )
    started = {}
    try:
        if once_up:
            banner(proc, log)
        deadline = time.monotonic() + 180
        while "dagster dev" not in " | ".join((started := descendants(proc.pid)).values()):
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()
            time.sleep(0.1)
        if target == "make ui":
            proc.send_signal(how)
        else:
            os.kill(next(pid for pid, c in started.items() if target in c), how)
        proc.wait(timeout=90)
        assert_all_end(started, how.name)
    finally:
        kill_all(proc, started)
    assert proc.returncode == exit_code, log.read_text()[-3000:]
    if once_up:
        commands = " | ".join(started.values())
        assert "dagster_webserver" in commands and "dagster._daemon" in commands, commands[:3000]
    else:
        assert "Dagster UI at" not in log.read_text()
        assert log.read_text().splitlines()[-1] == "stopped while starting; nothing left running"
        assert "Traceback" not in log.read_text(), log.read_text()[-3000:]
    if target != "make ui":
        assert re.fullmatch(
            r"dagster dev ended on its own \(exit code -?\d+\): its log above says why",
            log.read_text().splitlines()[-1],
        ), log.read_text()[-3000:]
    assert "nova_pipeline.simulator" in " | ".join(started.values())
    _check_port_free("127.0.0.1", port)
    with open(home / ".nova_ui.lock") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)


def test_make_ui_starts_the_simulator_again_where_runs_reach_it_or_stops_saying_why(tmp_path):
    """A simulator that dies under `make ui` (OOM, a stray `kill`) left every run failing on
    refused connections while the banner still named it. It is started again on the port
    `dagster dev` was given, and a run then succeeds; if it cannot be (its port taken
    meanwhile), `make ui` stops everything and says why."""
    home = tmp_path / "home"
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOVA_")}
    env |= {"NOVA_DATA_DIR": str(tmp_path / "data"), "DAGSTER_HOME": str(home)}
    env |= {"DAGSTER_PORT": str(free_port())}
    log = tmp_path / "ui.log"
    with open(log, "w") as out:
        proc = subprocess.Popen(UI, env=env, stdout=out, stderr=subprocess.STDOUT)
    started = {}
    try:
        line = banner(proc, log)
        url, api_url = line.split()[3], line.split("(simulator at ")[1].split(")")[0]
        simulators = [p for p, c in descendants(proc.pid).items() if "nova_pipeline.simulator" in c]
        assert len(simulators) == 1, descendants(proc.pid)
        os.kill(simulators[0], signal.SIGKILL)
        restarted = (
            f"the simulator ended on its own (exit code -9) and was started again at {api_url}; "
            "runs in flight retry their requests and go on, any that failed meanwhile can be "
            "re-executed"
        )
        deadline = time.monotonic() + 60
        while restarted not in log.read_text():
            assert proc.poll() is None and time.monotonic() < deadline, log.read_text()[-3000:]
            time.sleep(0.5)
        day = dt.date(2026, 11, 18)
        run = wait_for_run(url, launch_day_run(url, day))
        assert run["status"] == "SUCCESS", log.read_text()[-3000:]
        with duckdb.connect(str(tmp_path / "data" / "nova.duckdb"), read_only=True) as con:
            [(events,)] = con.execute("SELECT count(*) FROM call_sms_events").fetchall()
        assert events == len(served_items(api_url, day)) > 0

        started = descendants(proc.pid)
        [simulator] = [p for p, c in started.items() if "nova_pipeline.simulator" in c]
        port = int(api_url.split(":")[2].split("/")[0])
        proc.send_signal(signal.SIGSTOP)
        with socket.socket() as taken:
            os.kill(simulator, signal.SIGKILL)
            taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            deadline = time.monotonic() + 30
            while True:
                try:
                    taken.bind(("127.0.0.1", port))
                    break
                except OSError:
                    assert time.monotonic() < deadline, f"port {port} never freed"
                    time.sleep(0.1)
            taken.listen()
            proc.send_signal(signal.SIGCONT)
            proc.wait(timeout=120)
        assert_all_end(started, "the simulator could not restart")
    finally:
        kill_all(proc, started)
    said = log.read_text()
    assert proc.returncode == 1, said[-3000:]
    assert f"cannot serve on 127.0.0.1:{port}: Address already in use" in said, said[-3000:]
    assert (
        f"the simulator ended on its own (exit code -9) and could not be started again (the "
        f"simulator on http://127.0.0.1:{port} exited with code 1); stopping dagster dev and "
        "the simulator"
    ) in said, said[-3000:]
    _check_port_free("127.0.0.1", int(url.rsplit(":", 1)[1]))


@pytest.mark.timeout(600)
def test_terminate_in_the_ui_stops_a_pull_in_flight_and_leaves_nothing(tmp_path):
    """The UI's "Terminate" on a run that is pulling: the days in flight stop before their
    next request, so the run is canceled within seconds (it took 162 s here, waiting for
    every page of the day, with pages of 5 items) and its landed pages are removed."""
    args = ["--seed", "7", "--sims", "500", "--groups", "3", "--events-per-sim-day", "20"]
    args += ["--now", "2026-11-20T12:00:00+05:00"]
    with dagster_dev_stack(
        tmp_path, args, NOVA_GROUPS="1=Trackers,2=Vans,3=Meters", NOVA_PAGE_SIZE="5"
    ) as (url, _, warehouse):
        run_id = launch_day_run(url, dt.date(2026, 11, 18))

        def ended() -> str | None:
            run = graphql(url, RUN_STATUS, id=run_id)["runOrError"]
            return str(run) if run["status"] in FINISHED_RUN else None

        wait_until_a_page_lands(tmp_path / "data", ended)
        terminated = graphql(url, TERMINATE, id=run_id)["terminateRun"]
        assert terminated["__typename"] == "TerminateRunSuccess", terminated
        run = wait_for_run(url, run_id, timeout_s=60)
        assert run["status"] == "CANCELED", run
        landing = tmp_path / "data" / "landing" / "call_sms"
        assert not list(landing.glob("day=*/fetch=*")), "the pull's pages removed"
        assert not warehouse.exists(), "the run's first write comes after its pull"
