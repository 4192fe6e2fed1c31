"""`make demo`, the README's first command: its run, and the two tables it prints checked
against the items the API serves."""

from __future__ import annotations

import datetime as dt
import os
import re
import signal
import subprocess
import sys
import time
from collections import defaultdict
from decimal import Decimal
from itertools import takewhile
from pathlib import Path

import dagster as dg
import duckdb
import httpx
import pytest

from nova_pipeline.checks import ASSET_CHECKS
from nova_pipeline.clock import latest_complete_day
from nova_pipeline.demo import (
    DAYS,
    DEMO_GROUPS,
    ENDED,
    IN_TWO_GROUPS,
    NOT_STARTED,
    SIMULATOR_ARGS,
    interrupted_run,
    print_table,
    totals_note,
)
from nova_pipeline.settings import Settings, parse_groups
from nova_pipeline.simulator import FleetSpec
from nova_pipeline.simulator.process import simulator_process
from nova_pipeline.ui import project_home
from tests.conftest import (
    descendants,
    running,
    served_items,
    wait_until_a_page_lands,
    warehouse_held,
)

SIMULATOR_SYNC = f"{FleetSpec.sync_hour:02d}:00"
"""The simulator's daily sync: the days' items change when it runs."""


def demo_env(tmp_path: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOVA_")}
    env["DAGSTER_HOME"] = str(project_home(tmp_path / "home"))
    env["NOVA_DATA_DIR"] = str(tmp_path / "data")
    return env


def run_demo(env: dict[str, str]) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "nova_pipeline.demo"],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def recorded_runs(home: str) -> list[dg.DagsterRun]:
    with dg.DagsterInstance.from_config(home) as instance:
        return list(instance.get_runs())


def table(out: str, title: str) -> list[list[str]]:
    """The rows of a table the demo printed (after its title, header and rule, up to a blank
    line or a note in brackets), each split on its blanks: a SIM's name may be empty or hold
    blanks, so its columns are read from both ends."""
    lines = out[out.index(title) :].splitlines()[3:]
    return [line.split() for line in takewhile(lambda s: s.strip() and s[0] != "(", lines)]


def test_demo_prints_each_groups_cost_and_the_top_sims_as_the_api_serves_them(tmp_path):
    env = demo_env(tmp_path)
    started = dt.datetime.now(dt.UTC)
    demo = run_demo(env)
    ended = dt.datetime.now(dt.UTC)
    assert demo.returncode == 0, demo.stderr[-3000:]
    tz, ready = Settings.timezone, Settings.schedule_time
    for ready_at in (SIMULATOR_SYNC, ready):
        if latest_complete_day(started, tz, ready_at) != latest_complete_day(ended, tz, ready_at):
            pytest.skip("the provider's day turned while the demo ran; its days moved")

    first, last = (
        dt.date.fromisoformat(d)
        for d in re.search(r"materializing (\S+)\.\.(\S+) ", demo.stdout).groups()
    )
    assert last == latest_complete_day(started, tz, ready)
    assert (last - first).days == DAYS - 1

    groups = parse_groups(DEMO_GROUPS)
    expected: dict[str, list] = {
        str(g): [name, 0, 0, Decimal(0)] for g, name in [*groups.items(), ("-", "ungrouped")]
    }
    per_sim: dict[int, list] = defaultdict(lambda: [0, Decimal(0)])
    names: dict[int, str | None] = {}
    total = Decimal(0)
    with simulator_process([*SIMULATOR_ARGS, "--now", started.isoformat()]) as api_url:
        for n in range(DAYS):
            day = first + dt.timedelta(days=n)
            members = {
                sim: str(g)
                for g in groups
                for sim in {item["id"] for item in served_items(api_url, day, f"g_{g}")}
            }
            active: dict[str, set[int]] = defaultdict(set)
            for item in served_items(api_url, day):
                cost = Decimal(str(item["session_cost"]))
                group = members.get(item["id"], "-")
                active[group].add(item["id"])
                expected[group][2] += 1
                expected[group][3] += cost
                per_sim[item["id"]][0] += 1
                per_sim[item["id"]][1] += cost
                names[item["id"]] = item["name"]
                total += cost
            for group, sims in active.items():
                expected[group][1] = max(expected[group][1], len(sims))

    rows = table(demo.stdout, "Cost per group")
    events = sum(row[2] for row in expected.values())
    assert rows[-1] == ["total", f"{events:,}", f"{total:,.2f}"]
    printed = {r[0]: [r[1], int(r[2]), r[3], r[4]] for r in rows[:-1]}
    assert printed == {
        g: [*row[:2], f"{row[2]:,}", f"{row[3]:,.2f}"] for g, row in expected.items()
    }
    assert sum(row[3] for row in expected.values()) == total > 0
    rounded_rows = sum(Decimal(f"{row[3]:.2f}") for row in expected.values())
    if rounded_rows != Decimal(f"{total:.2f}"):
        assert f"the rows add up to {rounded_rows:,.2f}, their exact amounts to {total:,.2f})" in (
            demo.stdout
        )
    else:
        assert "rounded to the cent" not in demo.stdout
    assert IN_TWO_GROUPS not in demo.stdout

    top = sorted(per_sim.items(), key=lambda kv: (-kv[1][1], kv[0]))[:10]
    printed_top = [
        (int(r[0]), " ".join(r[1:-3]), r[-2], r[-1]) for r in table(demo.stdout, "Top 10 SIMs")
    ]
    assert printed_top == [
        (sim, "-" if names[sim] is None else names[sim], f"{n:,}", f"{cost:,.2f}")
        for sim, (n, cost) in top
    ]
    header, _, *lines = demo.stdout[demo.stdout.index("Top 10 SIMs") :].splitlines()[1:13]
    for line, row in zip(lines, table(demo.stdout, "Top 10 SIMs"), strict=True):
        assert line.index(row[-3]) == header.index("iccid"), "an ICCID is a code: left-aligned"
        assert len(line) == len(header), "euro are right-aligned under their header"

    checks = sum(len(list(c.check_keys)) for c in ASSET_CHECKS)
    results = checks * DAYS
    assert f"checks: {results} of {results} results passed ({checks} checks," in demo.stdout
    assert checks > 0 and "WARN check" not in demo.stdout and "ERROR check" not in demo.stdout

    (run,) = recorded_runs(env["DAGSTER_HOME"])
    assert run.status == dg.DagsterRunStatus.SUCCESS
    assert run.tags["dagster/asset_partition_range_start"] == first.isoformat()
    assert run.tags["dagster/asset_partition_range_end"] == last.isoformat()
    with duckdb.connect(str(tmp_path / "data" / "nova.duckdb"), read_only=True) as con:
        assert con.execute("SELECT sum(cost_eur) FROM call_sms_events").fetchone()[0] == total


def test_the_group_table_says_why_its_rows_do_not_add_up_to_its_total():
    """Rows and total are each rounded to the cent: 0.005 three times prints as 0.00 + 0.00
    + 0.00 (half to even) against a total of 0.02 (0.015). A SIM in two groups counts in
    each group's row and once in the total."""
    assert totals_note([Decimal("1.001"), Decimal("2.002")], Decimal("3.003")) is None
    assert totals_note([Decimal("0.005")] * 3, Decimal("0.015")) == (
        "(each amount is rounded to the cent on its own: the rows add up to 0.00, "
        "their exact amounts to 0.02)"
    )
    assert totals_note([Decimal("1.50"), Decimal("1.50")], Decimal("2.00")) == IN_TWO_GROUPS


def test_a_sim_the_api_names_null_shows_a_dash_and_one_named_empty_shows_nothing(capsys):
    print_table(
        "Top SIMs",
        ["sim_id", "name", "cost €"],
        [(7, None, "1.00"), (12, "", "0.50"), (3, "Van 3", "0.25")],
        right={"sim_id", "cost €"},
    )
    assert capsys.readouterr().out.splitlines()[2:] == [
        "sim_id  name   cost €",
        "------  -----  ------",
        "     7  -        1.00",
        "    12           0.50",
        "     3  Van 3    0.25",
    ]


def test_demo_says_at_once_which_process_holds_the_warehouse_and_runs_nothing(tmp_path):
    env = demo_env(tmp_path)
    warehouse = tmp_path / "data" / "nova.duckdb"
    warehouse.parent.mkdir(parents=True)
    with warehouse_held(warehouse, read_only=False) as holder:
        demo = run_demo(env)
    assert demo.returncode == 1
    assert f"cannot write the warehouse {warehouse}" in demo.stderr
    assert f"(PID {holder.pid})" in demo.stderr
    assert "Traceback" not in demo.stderr
    assert recorded_runs(env["DAGSTER_HOME"]) == []


def test_a_failed_run_is_said_and_no_table_is_printed(tmp_path):
    """A run that fails (here every pull stops at its page cap) must not be followed by
    tables read from whatever the warehouse held before."""
    env = {**demo_env(tmp_path), "NOVA_MAX_PAGES": "1"}
    demo = run_demo(env)
    assert demo.returncode == 1
    said = demo.stderr.strip().splitlines()[-2:]
    assert said[0].startswith(
        "the run failed at call_sms_raw_pages, which wrote nothing: "
        "nova_pipeline.api.errors.TooManyPagesError: all "
    )
    assert said[0].endswith("(NOVA_MAX_PAGES); raise the cap if the day is really that large")
    assert said[1] == "`make ui` shows the run's log"
    assert "Cost per group" not in demo.stdout and "checks:" not in demo.stdout
    (run,) = recorded_runs(env["DAGSTER_HOME"])
    assert run.status == dg.DagsterRunStatus.FAILURE
    assert not list((tmp_path / "data").glob("landing/call_sms/day=*/fetch=*")), "pulls removed"


@pytest.mark.parametrize("how", [signal.SIGINT, signal.SIGTERM, signal.SIGHUP], ids=str)
def test_ctrl_c_stops_the_demo_saying_where_with_no_traceback_and_nothing_left_running(
    tmp_path, how
):
    """Ctrl-C (or `kill`, or the terminal closing) once the run is pulling: the days in flight
    stop, Dagster ends the run as failed, the demo says at which step, exits 130 as an
    interrupted command does, and stops the simulator. Ended at once by SIGHUP, it left its
    run "started" for good. Pages of 5 items make the pull last minutes, so the signal lands
    in it, not after the run's last step, where Dagster no longer sees it."""
    env = {**demo_env(tmp_path), "NOVA_PAGE_SIZE": "5"}
    landing = tmp_path / "data" / "landing"
    with open(tmp_path / "out", "w") as out, open(tmp_path / "err", "w") as err:
        demo = subprocess.Popen(
            [sys.executable, "-m", "nova_pipeline.demo"], env=env, stdout=out, stderr=err
        )
    try:
        wait_until_a_page_lands(
            tmp_path / "data",
            lambda: None if demo.poll() is None else (tmp_path / "err").read_text()[-3000:],
        )
        demo.send_signal(how)
        demo.wait(timeout=300)
    finally:
        demo.kill()
    stdout, stderr = (tmp_path / "out").read_text(), (tmp_path / "err").read_text()
    assert demo.returncode == 130, stderr[-3000:]
    if how != signal.SIGHUP:  # the terminal is gone: the last words go nowhere
        assert stderr.strip().splitlines()[-1] == (
            "interrupted at call_sms_raw_pages, which wrote nothing; `make ui` shows the run's log"
        )
    assert "Traceback" not in stderr and "Cost per group" not in stdout
    (run,) = recorded_runs(env["DAGSTER_HOME"])
    assert run.status == dg.DagsterRunStatus.FAILURE
    assert not list(landing.glob("call_sms/day=*/fetch=*")), "pulls removed"
    api_url = re.search(r"simulator at (\S+);", stdout).group(1)
    with pytest.raises(httpx.ConnectError):
        httpx.get(api_url, timeout=5)


def waiting_for_the_simulator(demo: int) -> int | None:
    """The simulator's pid once the demo waits for it to answer: it runs the simulator's
    code, and the demo sleeps between two polls, done with the imports its first poll made.
    A signal landing in an import can be lost to Python (raised in a weakref callback, it is
    printed as ignored) or end the process by SIGINT after it was handled (raised in an
    `exec` of a string, as dataclasses make their methods): neither is the demo's doing."""
    if "nanosleep" not in Path(f"/proc/{demo}/wchan").read_text():
        return None
    simulators = [pid for pid, cmd in descendants(demo).items() if "nova_pipeline.simulator" in cmd]
    return simulators[0] if simulators else None


def test_ctrl_c_in_a_terminal_as_the_demo_starts_says_so_in_one_line_and_leaves_nothing(
    tmp_path,
):
    """Ctrl-C while the simulator starts, before any run, as a terminal sends it: to the
    demo's whole process group. It printed Python's traceback and ended by the signal."""
    env = demo_env(tmp_path)
    demo = subprocess.Popen(
        [sys.executable, "-m", "nova_pipeline.demo"],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not (simulator := waiting_for_the_simulator(demo.pid)):
            assert demo.poll() is None, demo.stderr.read()[-3000:]
            assert time.monotonic() < deadline, "the demo never waited for its simulator"
            time.sleep(0.01)
        os.killpg(demo.pid, signal.SIGINT)
        stdout, stderr = demo.communicate(timeout=60)
    finally:
        demo.kill()
    assert demo.returncode == 130, stderr[-3000:]
    assert stderr.strip().splitlines()[-1] == NOT_STARTED
    assert "Traceback" not in stderr and "simulator at" not in stdout
    assert recorded_runs(env["DAGSTER_HOME"]) == []
    assert not (tmp_path / "data" / "nova.duckdb").exists()
    deadline = time.monotonic() + 30
    while running(simulator) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not running(simulator), "the simulator was left running"


def test_ctrl_c_in_a_steps_duckdb_query_is_said_as_an_interrupt():
    """DuckDB answers an interrupt that lands in a query (a step's write, most of the demo's
    run after the pull) with an error of its own in place of Dagster's: the demo said the
    run failed, "RuntimeError: Query interrupted", exit 1. Dagster in a child process: the
    signal is sent to that process."""
    script = (
        "import os, signal, threading\n"
        "import dagster as dg, duckdb\n"
        "from nova_pipeline.demo import run_failure\n"
        "@dg.op\n"
        "def write():\n"
        "    threading.Timer(0.5, os.kill, (os.getpid(), signal.SIGINT)).start()\n"
        "    duckdb.connect().sql('SELECT count(*) FROM range(10000000000) t(i) WHERE i % 7 = 3')"
        ".fetchall()\n"
        "@dg.job\n"
        "def job():\n"
        "    write()\n"
        "with dg.instance_for_test() as instance:\n"
        "    result = job.execute_in_process(instance=instance, raise_on_error=False)\n"
        "print(repr(run_failure(result)))\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=120
    )
    assert run.returncode == 0, run.stderr[-3000:]
    assert run.stdout.strip().splitlines()[-1] == repr(
        ("interrupted at write, which wrote nothing; `make ui` shows the run's log", 130)
    )


def test_a_terminals_ctrl_c_leaves_the_simulator_to_the_process_that_started_it():
    """The simulator of `make demo` and `make ui` ends when they stop it, not on the Ctrl-C
    sent to their process group: ended by it first, it left a run that Dagster had not yet
    seen interrupted failing on refused connections after its retries."""
    script = (
        "import os, signal, time, httpx\n"
        "from nova_pipeline.simulator.process import simulator_child\n"
        "with simulator_child(['--sims', '10']) as child:\n"
        "    signal.signal(signal.SIGINT, signal.SIG_IGN)\n"
        "    os.killpg(0, signal.SIGINT)\n"
        "    time.sleep(1)\n"
        "    health = httpx.get(child.base + '/_simulator/health', timeout=5)\n"
        "    print(child.ended(), health.status_code)\n"
        "print(child.ended() is not None)\n"
    )
    run = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        start_new_session=True,  # its own process group, as a terminal's job has
    )
    assert run.stdout.split() == ["None", "200", "True"], run.stderr[-3000:]


def test_an_interrupt_out_of_the_run_fails_a_run_recorded_but_not_begun(tmp_path):
    """Ctrl-C gets out of `execute_in_process` only before its first step (while Dagster
    records the run and its planned materializations) or after its last; a run left
    "not started" would stay so in `make ui` for good."""

    @dg.asset
    def one() -> int:
        return 1

    with dg.instance_for_test(temp_dir=str(tmp_path)) as instance:
        job = dg.Definitions(assets=[one]).resolve_implicit_global_asset_job_def()
        recorded = instance.create_run_for_job(job_def=job)
        assert interrupted_run(instance, recorded.run_id) == NOT_STARTED
        assert instance.get_run_by_id(recorded.run_id).status == dg.DagsterRunStatus.FAILURE

        finished = dg.materialize([one], instance=instance)
        assert interrupted_run(instance, finished.run_id) == ENDED
        assert instance.get_run_by_id(finished.run_id).status == dg.DagsterRunStatus.SUCCESS

        assert interrupted_run(instance, "b8a5c4a4-0000-4000-8000-000000000000") == NOT_STARTED


def test_only_an_interrupt_while_a_connection_closes_is_kept_off_stderr():
    """What SQLAlchemy's pool logs when Ctrl-C lands as it closes a connection is dropped;
    a pool error of any other cause is still shown, with its traceback."""
    logged = subprocess.run(
        [
            sys.executable,
            "-c",
            "import logging\n"
            "from nova_pipeline.demo import quiet_interrupted_closes\n"
            "quiet_interrupted_closes()\n"
            "log = logging.getLogger('sqlalchemy.pool.impl.NullPool')\n"
            "for error in (KeyboardInterrupt, OSError('disk I/O error')):\n"
            "    try:\n"
            "        raise error\n"
            "    except BaseException as exc:\n"
            "        name = type(exc).__name__\n"
            "        log.error('Exception closing connection %s', name, exc_info=True)\n",
        ],
        capture_output=True,
        text=True,
        check=True,
    )
    assert "Exception closing connection OSError" in logged.stderr
    assert "OSError: disk I/O error" in logged.stderr
    assert "KeyboardInterrupt" not in logged.stderr
