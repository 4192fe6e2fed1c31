"""The code location as a user finds it in the UI: what the job runs, how a backfill is
cut into runs, what keeps DuckDB to one writer, and what is on without anyone turning it on."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from nova_pipeline.definitions import defs
from nova_pipeline.jobs import call_sms_job
from nova_pipeline.warehouse import TABLES, ensure_schema, qualified_name

ASSETS = {
    "call_sms_raw_pages",
    "call_sms_events",
    "call_sms_rejects",
    "sim_group_membership",
    "sim_daily_cost",
    "group_daily_cost",
}
DATA_CHECKS = {
    "call_sms_events:sids_unique",
    "call_sms_events:types_known",
    "call_sms_events:cost_not_negative",
    "call_sms_events:rejects_share",
    "call_sms_events:out_of_window_share",
    "call_sms_events:daily_volume_usual",
    "call_sms_events:cost_per_event_usual",
    "sim_group_membership:group_sids_in_account_pull",
    "sim_daily_cost:sim_cost_reconciles",
    "group_daily_cost:group_cost_reconciles",
    "group_daily_cost:group_volume_usual",
}


def check_names(keys) -> set[str]:
    return {f"{k.asset_key.to_user_string()}:{k.name}" for k in keys}


def test_the_job_runs_every_asset_and_data_check_and_leaves_freshness_to_its_sensor():
    graph = defs.resolve_asset_graph()
    assert {k.to_user_string() for k in call_sms_job.selection.resolve(graph)} == ASSETS
    assert check_names(call_sms_job.selection.resolve_checks(graph)) == DATA_CHECKS
    freshness = {f"{asset}:freshness_check" for asset in ASSETS}
    assert check_names(graph.asset_check_keys) == DATA_CHECKS | freshness
    assert defs.resolve_job_def("call_sms_job").executor_def.name == "in_process"


def test_every_asset_is_a_provider_day_batched_in_backfills_and_in_the_duckdb_pool():
    graph = defs.resolve_asset_graph()
    for key in graph.get_all_asset_keys():
        node = graph.get(key)
        assert node.partitions_def == dg.DailyPartitionsDefinition(
            start_date="2024-01-01", timezone="Asia/Almaty"
        ), key
        assert node.backfill_policy == dg.BackfillPolicy.multi_run(31), key
        assert node.assets_def.op.pool == "duckdb", key


def test_the_schedule_and_the_sensors_are_on_by_default():
    assert {s.name: s.default_status for s in defs.schedules} == {
        "call_sms_daily": dg.DefaultScheduleStatus.RUNNING
    }
    assert {s.name: s.default_status for s in defs.sensors} == {
        "freshness_checks_sensor": dg.DefaultSensorStatus.RUNNING,
        "call_sms_late_sync": dg.DefaultSensorStatus.RUNNING,
        "stranded_runs": dg.DefaultSensorStatus.RUNNING,
    }


def test_each_asset_names_its_table_and_columns_as_duckdb_has_them(tmp_path: Path):
    """The table name an analyst copies from the UI runs in a session on the warehouse, and
    the column schema is the table's: names, types, which columns may be null, and the
    descriptions, which the session reads as comments, as it reads the grain."""
    with duckdb.connect(str(tmp_path / "nova.duckdb")) as con:
        ensure_schema(con)
        for spec in defs.resolve_all_asset_specs():
            name = spec.metadata["dagster/table_name"]
            assert con.execute(f"SELECT count(*) FROM {name}").fetchone() == (0,), name
            table = spec.key.to_user_string()
            described = con.execute(
                "SELECT column_name, data_type, is_nullable, comment FROM duckdb_columns() "
                "WHERE table_name = ? ORDER BY column_index",
                [table],
            ).fetchall()
            columns = spec.metadata["dagster/column_schema"].columns
            shown = [
                (
                    c.name,
                    con.execute(f"SELECT typeof(NULL::{c.type})").fetchone()[0],
                    c.constraints.nullable,
                    c.description,
                )
                for c in columns
            ]
            assert shown == described, table
            assert any(not nullable for _, _, nullable, _ in shown), table
            grain = con.execute(
                "SELECT comment FROM duckdb_tables() WHERE table_name = ?", [table]
            ).fetchone()
            assert grain == (spec.metadata["grain"],), table
            assert spec.metadata["grain"].startswith("One row per "), table


def test_the_table_names_follow_nova_duckdb_path(tmp_path: Path):
    code = (
        "import json; from nova_pipeline.definitions import defs; print(json.dumps(sorted("
        "s.metadata['dagster/table_name'] for s in defs.resolve_all_asset_specs())))"
    )
    env = {**os.environ, "NOVA_DUCKDB_PATH": str(tmp_path / "mine.duckdb")}
    loaded = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True
    )
    assert json.loads(loaded.stdout) == sorted(f"mine.main.{table}" for table in TABLES)


@pytest.mark.parametrize(
    ("file", "name"),
    [
        ("mine.duckdb", "mine.main.t"),
        ("my.wh.duckdb", "my.main.t"),
        ("Data-1.db", '"Data-1".main.t'),
        ("warehouse", "warehouse.main.t"),
        ("order.duckdb", '"order".main.t'),
    ],
)
def test_a_table_name_follows_the_warehouse_file(tmp_path: Path, file: str, name: str):
    assert qualified_name("t", tmp_path / file) == name
    with duckdb.connect(str(tmp_path / file)) as con:
        con.execute("CREATE TABLE t AS SELECT 42 AS x")
        assert con.execute(f"SELECT x FROM {name}").fetchone() == (42,)
