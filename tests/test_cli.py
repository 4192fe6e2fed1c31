"""The documented CLI path: `dagster asset materialize` against a running simulator."""

from __future__ import annotations

import os
from decimal import Decimal

import duckdb

from nova_pipeline.simulator.process import simulator_process
from nova_pipeline.warehouse import TABLES
from tests.conftest import DAY, dagster_materialize, independent_costs


def test_dagster_asset_materialize_builds_the_six_tables_and_reruns_change_nothing(tmp_path):
    args = [
        "--seed",
        "7",
        "--sims",
        "40",
        "--groups",
        "3",
        "--events-per-sim-day",
        "12",
        "--now",
        "2026-11-20T12:00:00+05:00",
    ]
    with simulator_process(args) as api_url:
        home = tmp_path / "home"
        home.mkdir()
        env = {
            **os.environ,
            "NOVA_API_URL": api_url,
            "NOVA_GROUPS": "1=A,2=B,3=C",
            "NOVA_DUCKDB_PATH": str(tmp_path / "w.duckdb"),
            "NOVA_DATA_DIR": str(tmp_path / "data"),
            "DAGSTER_HOME": str(home),
        }
        first = dagster_materialize(env)
        assert first.returncode == 0, first.stderr[-3000:]
        expected, _ = independent_costs(api_url)

        def state():
            with duckdb.connect(env["NOVA_DUCKDB_PATH"], read_only=True) as con:
                tables = {r[0] for r in con.execute("SHOW TABLES").fetchall()}
                sims = dict(
                    con.execute(
                        "SELECT sim_id, cost_eur FROM sim_daily_cost WHERE day = ?", [DAY]
                    ).fetchall()
                )
                groups = con.execute(
                    "SELECT group_id, cost_eur FROM group_daily_cost ORDER BY ALL"
                ).fetchall()
                events = con.execute("SELECT * FROM call_sms_events ORDER BY sid").fetchall()
            return tables, sims, groups, events

        tables, sims, groups, events = state()
        assert tables == set(TABLES)
        assert sims == expected
        assert sum((g[1] for g in groups), Decimal(0)) == sum(expected.values())
        second = dagster_materialize(env)
        assert second.returncode == 0, second.stderr[-3000:]
        assert state() == (tables, sims, groups, events)
