"""The API gone for a few seconds in the middle of a run (restarted, a network blip), as the
simulator under `make ui` is when it dies and is started again."""

from __future__ import annotations

import os
import subprocess
import time
from decimal import Decimal

import duckdb

from nova_pipeline.simulator.process import SimulatorChild, free_port
from tests.conftest import NOW, independent_costs, materialize_command

FLEET = ["--seed", "7", "--sims", "40", "--groups", "3", "--events-per-sim-day", "12"]
FLEET += ["--now", NOW.isoformat()]
HOLDS_EVERY_REQUEST = ["--faults", "slow", "--fault-rate", "slow=1", "--slow-seconds", "600"]


def requests_held(port: int) -> int:
    """Connections the server on `port` has accepted and not closed (Linux, IPv4)."""
    with open("/proc/net/tcp") as table:
        rows = [line.split() for line in table.readlines()[1:]]
    return sum(1 for row in rows if int(row[1].split(":")[1], 16) == port and row[3] == "01")


def test_a_run_whose_api_goes_away_mid_pull_waits_for_it_and_stores_the_day_whole(tmp_path):
    """The simulator is killed while it holds the run's first requests, and a new one starts
    on its port: the cut requests and those refused meanwhile are retried with the default
    backoff, the run succeeds, and the day equals what the API serves, to the cent."""
    port = free_port()
    env = {k: v for k, v in os.environ.items() if not k.startswith("NOVA_")}
    env |= {
        "NOVA_API_URL": f"http://127.0.0.1:{port}/api",
        "NOVA_GROUPS": "1=A,2=B,3=C",
        "NOVA_DATA_DIR": str(tmp_path / "data"),
        "DAGSTER_HOME": str(tmp_path),
    }
    gone = SimulatorChild([*FLEET, *HOLDS_EVERY_REQUEST], port, timeout_s=30)
    back = SimulatorChild(FLEET, port, timeout_s=30)
    gone.start()
    with open(tmp_path / "run.log", "w") as out:
        run = subprocess.Popen(materialize_command(), env=env, stdout=out, stderr=out)
    try:
        deadline = time.monotonic() + 120
        while not requests_held(port):
            assert run.poll() is None, (tmp_path / "run.log").read_text()[-3000:]
            assert time.monotonic() < deadline, "the run sent no request"
            time.sleep(0.1)
        gone.process.kill()
        gone.process.wait()
        back.start()
        assert run.wait(timeout=300) == 0, (tmp_path / "run.log").read_text()[-3000:]
        costs, counts = independent_costs(back.api_url)
    finally:
        run.kill()
        run.wait()
        gone.stop()
        back.stop()

    with duckdb.connect(str(tmp_path / "data" / "nova.duckdb"), read_only=True) as con:
        [(events,)] = con.execute("SELECT count(*) FROM call_sms_events").fetchall()
        [(euro,)] = con.execute("SELECT sum(cost_eur) FROM sim_daily_cost").fetchall()
        retried = con.execute(
            "SELECT attempts, retry_reasons FROM call_sms_raw_pages WHERE attempts > 1"
        ).fetchall()
    assert events == sum(counts.values()) > 0
    assert euro == sum(costs.values(), Decimal(0))
    refused = "connection error (ConnectError)"
    assert any(not r.startswith(refused) for _, r in retried), f"no request was cut: {retried}"
    for attempts, reasons in retried:
        causes = reasons.split("; ")
        assert len(causes) == attempts - 1
        assert all(cause.startswith("connection error (") for cause in causes), reasons
