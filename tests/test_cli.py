"""The documented CLI path: `dagster asset materialize` against a running simulator."""

from __future__ import annotations

import datetime as dt
import os
from decimal import Decimal
from zoneinfo import ZoneInfo

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


def test_a_time_zone_with_daylight_saving_keeps_its_23_and_25_hour_days_whole(tmp_path):
    """NOVA_TIMEZONE may be any IANA zone. Where the clocks change, the provider day of the
    change lasts 23 or 25 hours: each of its events is stored on that day, none is flagged
    out of window, and its euro add up to the cent."""
    zone = ZoneInfo("Europe/Berlin")
    short, long = dt.date(2026, 3, 29), dt.date(2026, 10, 25)
    args = ["--seed", "3", "--sims", "40", "--groups", "0", "--events-per-sim-day", "12"]
    args += ["--timezone", zone.key, "--now", "2026-11-20T12:00:00+01:00"]
    with simulator_process(args) as api_url:
        home = tmp_path / "home"
        home.mkdir()
        env = {
            **os.environ,
            "NOVA_API_URL": api_url,
            "NOVA_TIMEZONE": zone.key,
            "NOVA_DATA_DIR": str(tmp_path / "data"),
            "DAGSTER_HOME": str(home),
        }
        for day in (short, long):
            result = dagster_materialize(env, day)
            assert result.returncode == 0, result.stderr[-3000:]
        with duckdb.connect(str(tmp_path / "data" / "nova.duckdb"), read_only=True) as con:
            events = {
                day: (count, outside, last)
                for day, count, outside, last in con.execute(
                    "SELECT day, count(*), count(*) FILTER (WHERE out_of_window), "
                    "max(occurred_at) FROM call_sms_events GROUP BY day"
                ).fetchall()
            }
            euro = dict(
                con.execute("SELECT day, sum(cost_eur) FROM sim_daily_cost GROUP BY day").fetchall()
            )
        assert sorted(events) == [short, long]
        for day in (short, long):
            cost, count = independent_costs(api_url, day)
            assert events[day][:2] == (sum(count.values()), 0)
            assert euro[day] == sum(cost.values())

    def midnight(day: dt.date) -> dt.datetime:
        return dt.datetime.combine(day, dt.time(), zone).astimezone(dt.UTC)

    lengths = [midnight(day + dt.timedelta(days=1)) - midnight(day) for day in (short, long)]
    assert lengths == [dt.timedelta(hours=23), dt.timedelta(hours=25)]
    assert events[long][2] - midnight(long) > dt.timedelta(hours=24), "its 25th hour is kept"
