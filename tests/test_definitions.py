"""The code location as a user finds it in the UI: what the job runs, how a backfill is
cut into runs, what keeps DuckDB to one writer, and what is on without anyone turning it on."""

from __future__ import annotations

import dagster as dg

from nova_pipeline.definitions import defs
from nova_pipeline.jobs import call_sms_job

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
    "sim_group_membership:group_sids_in_account_pull",
    "sim_daily_cost:sim_cost_reconciles",
    "group_daily_cost:group_cost_reconciles",
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


def test_the_schedule_and_both_sensors_are_on_by_default():
    assert {s.name: s.default_status for s in defs.schedules} == {
        "call_sms_daily": dg.DefaultScheduleStatus.RUNNING
    }
    assert {s.name: s.default_status for s in defs.sensors} == {
        "freshness_checks_sensor": dg.DefaultSensorStatus.RUNNING,
        "call_sms_late_sync": dg.DefaultSensorStatus.RUNNING,
    }
