"""The benchmark code runs end to end on tiny volumes (no targets: timing is not tested)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.timeout(900)
def test_bench_smoke_writes_every_documented_key(tmp_path):
    out, md = tmp_path / "latest.json", tmp_path / "benchmarks.md"
    run = subprocess.run(
        [
            sys.executable,
            str(REPO / "bench" / "run.py"),
            "--smoke",
            "--out",
            str(out),
            "--md",
            str(md),
        ],
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stderr[-3000:]
    results = json.loads(out.read_text())
    for key in (
        "ceiling_events_per_s",
        "simulator_items_per_s",
        "plain_client_items_per_s",
        "e2e_events_per_s_1m",
        "e2e_seconds_1m",
        "peak_rss_mb_100k",
        "peak_rss_mb_1m",
        "backfill_seconds_per_day_batched",
        "backfill_seconds_per_day_per_run",
        "backfill_runs_batched",
        "backfill_runs_per_run",
        "e2e_seconds_1m_with_groups",
        "batch_seconds_per_day_1m",
        "peak_rss_mb_batch_1m",
        "year_backfill_minutes_1m",
    ):
        assert results[key] > 0, key
    # Both backfills cover the same days: one run in all, and one run per day.
    assert results["backfill_runs_batched"] == 1
    assert results["backfill_runs_per_run"] == results["backfill_days"] == 3
    for mode in ("batched", "per_run"):
        # The runs are timed from the first one's creation, once the daemon took the
        # backfill up; from launch, that wait is in the figure too.
        pickup = results[f"backfill_pickup_seconds_{mode}"]
        per_day, from_launch = (
            results[f"backfill_seconds_per_day_{mode}{suffix}"] for suffix in ("", "_from_launch")
        )
        assert pickup > 0 and per_day > 0, mode
        assert per_day * 3 + pickup == pytest.approx(from_launch * 3), mode
        # Launched at any moment, the backfill waits half of the daemon's tick on average.
        half_tick = results["backfill_daemon_tick_seconds"] / 2
        average = results[f"backfill_seconds_per_day_{mode}_from_average_launch"]
        assert per_day * 3 + half_tick == pytest.approx(average * 3), mode
    assert results["e2e_events_1m"] > 0 and "| simulator serving rate |" in md.read_text()
    # The day's CPU: the run's process always uses some, the simulator's pages may take
    # less than a clock tick; the run cannot have been faster than that CPU allows.
    assert results["e2e_cpu_seconds_1m"] > 0
    assert results["e2e_simulator_cpu_seconds_1m"] >= 0
    assert 0 < results["e2e_least_seconds_1m"] <= results["e2e_seconds_1m"]
    assert results["e2e_cores_busy_1m"] <= 1
    assert results["e2e_seconds_1m_at_target"] > 0
    assert results["e2e_items_fetched_1m_with_groups"] > results["e2e_events_1m_with_groups"]
    assert 0 < results["landing_mb_1m"] < results["body_mb_1m"]
    # The full-volume batch is two days of the same fleet as the one-day run, in one run.
    assert results["batch_days_1m"] == 2
    assert results["e2e_events_1m"] < results["batch_events_1m"] < 3 * results["e2e_events_1m"]
