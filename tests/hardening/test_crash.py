"""A run killed with SIGKILL in the middle of writing a day loses nothing and blocks nothing,
and is re-executed once from the step that died."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

import duckdb
import pytest

from nova_pipeline.ui import launch_backfill, wait_for_backfill
from nova_pipeline.warehouse import TABLES
from nova_pipeline.warehouse.write import PAUSE_DIR_ENV
from tests.conftest import dagster_dev_stack

DAY = "2026-11-18"
SIM = [
    "--seed",
    "5",
    "--sims",
    "40",
    "--groups",
    "2",
    "--events-per-sim-day",
    "10",
    "--now",
    "2026-11-20T12:00:00+05:00",
]


def events(warehouse: Path) -> list[tuple]:
    with duckdb.connect(str(warehouse)) as con:
        return con.execute("SELECT * FROM call_sms_events ORDER BY sid").fetchall()


def kill_when_paused(pause: Path) -> int:
    """SIGKILL the next run to reach the events write (inside its transaction, after its
    delete); its pid."""
    deadline = time.monotonic() + 300
    while not (pause / "paused").exists() or not (pause / "paused").read_text():
        assert time.monotonic() < deadline, "no run reached the events write"
        time.sleep(0.2)
    pid = int((pause / "paused").read_text())
    (pause / "paused").unlink()
    os.kill(pid, signal.SIGKILL)
    return pid


@pytest.mark.timeout(1200)
def test_a_run_killed_mid_write_keeps_the_day_and_frees_the_pool(tmp_path):
    pause = tmp_path / "pause"
    pause.mkdir()
    with dagster_dev_stack(tmp_path, SIM, NOVA_GROUPS="1=A,2=B", **{PAUSE_DIR_ENV: str(pause)}) as (
        url,
        _,
        warehouse,
    ):
        first = wait_for_backfill(url, launch_backfill(url, list(TABLES), [DAY]))
        assert first["status"] == "COMPLETED_SUCCESS", first
        before = events(warehouse)
        assert len(before) > 300

        (pause / "pause").write_text("call_sms_events")
        killed = launch_backfill(url, list(TABLES), [DAY])
        killed_pid = kill_when_paused(pause)
        retry_pid = kill_when_paused(pause)
        assert retry_pid != killed_pid, (
            "the killed run was re-executed, and its retry reached the write"
        )
        (pause / "pause").unlink()

        state = wait_for_backfill(url, killed, settle_s=30)
        runs = sorted(state["runs"], key=lambda run: run["creationTime"])
        assert [run["status"] for run in runs] == ["FAILURE", "FAILURE"], (
            "killed, re-executed once (dagster.yaml's run_retries), killed again: no third run"
        )
        assert events(warehouse) == before, "the killed writes left the previous rows"

        again = wait_for_backfill(url, launch_backfill(url, list(TABLES), [DAY]), timeout_s=600)
        assert again["status"] == "COMPLETED_SUCCESS", again
        assert events(warehouse) == before
