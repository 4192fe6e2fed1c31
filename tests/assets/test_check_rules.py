"""The checks whose rules a clean run never breaks (the validation and the rollups keep it
so) still fail when a stored table breaks them: on the right day, with the figures, and
they pass again once the table is mended."""

from __future__ import annotations

import ast
import datetime as dt
from dataclasses import replace
from decimal import Decimal

import dagster as dg
import duckdb

from nova_pipeline.checks import (
    ALL_DAYS,
    ASSET_CHECKS,
    Finding,
    out_of_window_share,
    rejects_share,
)
from nova_pipeline.definitions import ASSETS
from nova_pipeline.transforms.costs import ACCOUNT_TOTALS_SQL, GROUP_TOTALS_SQL
from nova_pipeline.warehouse import ensure_schema
from tests.conftest import DAY, index_page

DAY_KEY = DAY.isoformat()
DAY_BEFORE = DAY - dt.timedelta(days=1)
DAY_BEFORE_KEY = DAY_BEFORE.isoformat()
CENT = Decimal("0.01")


def run_check(pipeline, asset: str, name: str) -> dg.AssetCheckEvaluation:
    only = dg.AssetSelection.checks(dg.AssetCheckKey(dg.AssetKey(asset), name))
    result = pipeline.run(DAY_KEY, selection=only, raise_on_error=False)
    (evaluation,) = result.get_asset_check_evaluations()
    return evaluation


def test_each_rule_fails_on_the_day_that_breaks_it_and_clears_when_mended(make_pipeline):
    pipeline = make_pipeline()
    pipeline.run(DAY_KEY)
    [(sid, sim, type_, cost, events, total)] = pipeline.sql(
        "SELECT min(sid), arg_min(sim_id, sid), arg_min(type, sid), arg_min(cost_eur, sid), "
        "count(*), sum(cost_eur) FROM call_sms_events"
    )
    [(group_events, group_cost)] = pipeline.sql(
        "SELECT events, cost_eur FROM group_daily_cost WHERE group_id = 1"
    )
    assert events > 100 and group_events > 0
    cases = [
        (
            ("call_sms_events", "cost_not_negative"),
            f"UPDATE call_sms_events SET cost_eur = -0.000001 WHERE sid = {sid}",
            f"UPDATE call_sms_events SET cost_eur = {cost} WHERE sid = {sid}",
            f"| {DAY_KEY} | 1 | -0.000001 |",
        ),
        (
            ("call_sms_events", "types_known"),
            f"UPDATE call_sms_events SET type = 'fax' WHERE sid = {sid}",
            f"UPDATE call_sms_events SET type = '{type_}' WHERE sid = {sid}",
            f"| {DAY_KEY} | 1 | ['fax'] |",
        ),
        (
            ("sim_daily_cost", "sim_cost_reconciles"),
            f"UPDATE sim_daily_cost SET cost_eur = cost_eur + 0.01 WHERE sim_id = {sim}",
            f"UPDATE sim_daily_cost SET cost_eur = cost_eur - 0.01 WHERE sim_id = {sim}",
            f"| {DAY_KEY} | {events} | {events} | {total} | {total + CENT} |",
        ),
        (
            ("sim_daily_cost", "sim_cost_reconciles"),
            f"UPDATE sim_daily_cost SET events = events + 1 WHERE sim_id = {sim}",
            f"UPDATE sim_daily_cost SET events = events - 1 WHERE sim_id = {sim}",
            f"| {DAY_KEY} | {events} | {events + 1} | {total} | {total} |",
        ),
        (
            ("group_daily_cost", "group_cost_reconciles"),
            "UPDATE group_daily_cost SET cost_eur = cost_eur - 0.01 WHERE group_id = 1",
            "UPDATE group_daily_cost SET cost_eur = cost_eur + 0.01 WHERE group_id = 1",
            f"| {DAY_KEY} | {events} | {events} | {total} | {total - CENT} |",
        ),
        (
            ("group_daily_cost", "group_cost_reconciles"),
            "UPDATE group_daily_cost SET events = events + 1 WHERE group_id = 1",
            "UPDATE group_daily_cost SET events = events - 1 WHERE group_id = 1",
            f"| {DAY_KEY} | {events} | {events + 1} | {total} | {total} |",
        ),
    ]
    for (asset, name), breaks, mends, detail in cases:
        pipeline.sql(breaks)
        broken = run_check(pipeline, asset, name)
        assert not broken.passed and broken.severity.value == "ERROR", (name, breaks)
        assert broken.metadata["failing_days"].value == [DAY_KEY]
        assert detail in broken.metadata["detail"].value, (breaks, broken.metadata["detail"])
        pipeline.sql(mends)
        assert run_check(pipeline, asset, name).passed, mends
    assert pipeline.sql("SELECT events, cost_eur FROM group_daily_cost WHERE group_id = 1") == [
        (group_events, group_cost)
    ]
    assert pipeline.sql("SELECT count(*), sum(cost_eur) FROM call_sms_events") == [(events, total)]


def test_checks_run_with_no_partition_judge_every_stored_day_at_once(make_pipeline):
    """Checks launched alone, not for a day or a range: one evaluation each, over every
    stored day, naming the day that breaks a rule (Dagster 1.13 failed the step when a
    check of a partitioned asset returned a result in a run with no partition)."""
    pipeline = make_pipeline()
    pipeline.run(DAY_BEFORE_KEY, DAY_KEY)
    pipeline.sql("UPDATE call_sms_events SET out_of_window = true WHERE day = ?", DAY_BEFORE)
    result = dg.materialize(
        [*ASSETS, *ASSET_CHECKS],
        resources=pipeline.resources,
        instance=pipeline.instance,
        selection=dg.AssetSelection.all_asset_checks(),
        raise_on_error=False,
    )
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert len(evaluations) == 11 and {e.partition for e in evaluations.values()} == {None}
    outside = evaluations.pop("out_of_window_share")
    assert not outside.passed and outside.severity.value == "WARN"
    assert outside.metadata["failing_days"].value == [DAY_BEFORE_KEY]
    assert {e.description for e in evaluations.values()} == {"passed for all days"}


def test_a_day_with_a_sim_in_two_groups_is_reconciled_counting_it_in_each(make_pipeline):
    """Overlapping groups count a SIM's cost in each of its groups, so such a day's group
    rows add up to more than the account (the demo's total row counts it once); the check
    counts the SIM once per group, names the day, and still catches a group row that is
    off by a cent."""
    pipeline = make_pipeline()
    pipeline.run(DAY_BEFORE_KEY, DAY_KEY)
    [(sim, cost)] = pipeline.sql(
        "SELECT sim_id, cost_eur FROM sim_daily_cost WHERE day = ? AND sim_id IN "
        "(SELECT sim_id FROM sim_group_membership WHERE group_id = 1) ORDER BY sim_id LIMIT 1",
        DAY,
    )
    pipeline.sql(
        "INSERT INTO sim_group_membership SELECT day, 2, 'Vans', sim_id FROM sim_group_membership "
        "WHERE day = ? AND group_id = 1 AND sim_id = ?",
        DAY,
        sim,
    )
    only_groups = dg.AssetSelection.assets("group_daily_cost")
    result = pipeline.run(DAY_BEFORE_KEY, DAY_KEY, selection=only_groups)
    [(accounted, total)] = pipeline.sql(
        "SELECT (SELECT sum(cost_eur) FROM group_daily_cost WHERE day = $1), "
        "(SELECT sum(cost_eur) FROM sim_daily_cost WHERE day = $1)",
        DAY,
    )
    assert accounted == total + cost
    assert sum(row[4] for row in pipeline.sql(GROUP_TOTALS_SQL, DAY, DAY)) == accounted
    assert pipeline.sql(ACCOUNT_TOTALS_SQL, DAY, DAY)[0][1] == total, "the demo's total row"
    checked = result.get_asset_check_evaluations()
    assert {e.check_name for e in checked} == {"group_cost_reconciles", "group_volume_usual"}
    assert all(e.passed for e in checked)
    evaluations = {e.partition: e for e in checked if e.check_name == "group_cost_reconciles"}
    assert evaluations[DAY_BEFORE_KEY].description == f"passed for {DAY_BEFORE_KEY}"
    assert "notes" not in evaluations[DAY_BEFORE_KEY].metadata
    note = "1 SIM in two or more groups, counted in each"
    assert evaluations[DAY_KEY].description == f"passed for {DAY}; note: {DAY} ({note})"
    assert evaluations[DAY_KEY].metadata["notes"].value == {DAY_KEY: note}

    pipeline.sql(
        "UPDATE group_daily_cost SET cost_eur = cost_eur + 0.01 WHERE day = ? AND group_id = 2",
        DAY,
    )
    reconciles = dg.AssetCheckKey(dg.AssetKey("group_daily_cost"), "group_cost_reconciles")
    result = pipeline.run(
        DAY_KEY, DAY_KEY, selection=dg.AssetSelection.checks(reconciles), raise_on_error=False
    )
    [evaluation] = result.get_asset_check_evaluations()
    assert not evaluation.passed
    assert evaluation.description == (
        f"group costs do not add up to the account total on {DAY}. Note: {DAY} ({note})."
    )
    assert f"| {DAY} |" in evaluation.metadata["detail"].value
    assert f"| {accounted} | {accounted + Decimal('0.01')} |" in evaluation.metadata["detail"].value


def test_a_result_over_many_days_names_those_noted():
    one, two = "1 SIM in two or more groups, counted in each", "2 SIMs in two or more groups"
    finding = Finding(ALL_DAYS, [], [], "", notes=[(DAY_BEFORE, two), (DAY, one)])
    noted = f"{DAY_BEFORE} ({two}), {DAY} ({one})"
    assert finding.result().description == f"passed for all days; note: {noted}"
    failing = replace(finding, failing=[(DAY_BEFORE, 1)], problem="off by one").result()
    assert failing.description == f"off by one on {DAY_BEFORE}. Note: {noted}."
    assert failing.metadata["notes"].value == {DAY_BEFORE_KEY: two, DAY_KEY: one}


def test_a_result_names_ten_failing_days_and_counts_the_rest():
    def failing(n: int) -> str:
        days = [(DAY + dt.timedelta(days=i), 1) for i in range(n)]
        return Finding(ALL_DAYS, days, ["day", "n"], "off").result().description

    tenth = DAY + dt.timedelta(days=9)
    assert failing(10).endswith(f", {tenth}.")
    assert failing(11).endswith(f", {tenth} and 1 more.")
    assert failing(11).count(", ") == 9


def test_the_reject_share_is_an_error_only_above_the_limit(tmp_path):
    """At exactly NOVA_REJECT_ERROR_SHARE (1% by default) the rejects are a WARN, which
    lets the rollups run; one more reject makes it an ERROR, which blocks them. Judged over
    both days at once (the UI's "Execute all"), one day above the limit is an ERROR."""
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        ensure_schema(con)
        for day in (DAY_BEFORE, DAY):
            index_page(con, day, 200)
        reject = "INSERT INTO call_sms_rejects VALUES (?, 'all', 0, ?, '{}')"
        con.execute(reject, [DAY_BEFORE, "sid: missing"])
        con.execute(reject, [DAY, "sid: missing"])
        con.execute(reject, [DAY, "session_cost: not a number"])
        at_limit = rejects_share(con, (DAY, DAY)).result()
        con.execute(reject, [DAY, "sid: missing"])
        above = rejects_share(con, (DAY, DAY)).result()
        both_days = rejects_share(con, (DAY_BEFORE, DAY)).result()
    assert (at_limit.passed, at_limit.severity.value) == (False, "WARN")
    assert f"| {DAY} | 2 | 200 | 0.01 |" in at_limit.metadata["detail"].value
    assert (above.passed, above.severity.value) == (False, "ERROR")
    reasons = ast.literal_eval(above.metadata["detail"].value.splitlines()[2].split("|")[5].strip())
    assert sorted(reasons) == ["session_cost: not a number", "sid: missing"]
    assert (both_days.passed, both_days.severity.value) == (False, "ERROR")
    assert f"items quarantined on {DAY_BEFORE}, {DAY}." in both_days.description


def test_events_outside_their_day_warn_only_above_one_percent(tmp_path):
    """2 of 200 events outside their day (1%) pass; a third makes it a WARN."""
    with duckdb.connect(str(tmp_path / "warehouse.duckdb")) as con:
        ensure_schema(con)
        con.execute(
            "INSERT INTO call_sms_events (sid, occurred_at, day, type, cost_eur, sim_id, "
            "out_of_window, source_page) "
            "SELECT i, now(), ?, 'call', 1, 1, i < 2, 0 FROM range(200) AS t(i)",
            [DAY],
        )
        one_percent = out_of_window_share(con, (DAY, DAY)).result()
        con.execute("UPDATE call_sms_events SET out_of_window = true WHERE sid < 3")
        above = out_of_window_share(con, (DAY, DAY)).result()
    assert one_percent.passed, one_percent.description
    assert (above.passed, above.severity.value) == (False, "WARN")
    assert f"| {DAY} | 3 | 200 | 0.015 |" in above.metadata["detail"].value


def test_each_days_result_is_about_that_days_latest_materialization(make_pipeline):
    """Checks run alone over two days after the second was re-run twice: each day's result
    names the materialization it judged, the latest of its own day (the two newest
    materializations are both of the second day, so the first day's is on a later page)."""
    pipeline = make_pipeline()
    pipeline.run(DAY_BEFORE_KEY, DAY_KEY)
    pipeline.run(DAY_KEY)
    pipeline.run(DAY_KEY)
    checks = dg.AssetSelection.checks_for_assets("call_sms_events")
    result = pipeline.run(DAY_BEFORE_KEY, DAY_KEY, selection=checks)
    latest = {
        day: pipeline.instance.fetch_materializations(
            dg.AssetRecordsFilter(asset_key=dg.AssetKey("call_sms_events"), asset_partitions=[day]),
            limit=1,
        ).records[0]
        for day in (DAY_BEFORE_KEY, DAY_KEY)
    }
    evaluations = result.get_asset_check_evaluations()
    assert len(evaluations) == 2 * 7
    for evaluation in evaluations:
        target = evaluation.target_materialization_data
        record = latest[evaluation.partition]
        assert (target.storage_id, target.run_id) == (record.storage_id, record.run_id)
