"""Freshness knows about partitions: yesterday must be in by 09:00 provider time."""

from __future__ import annotations

import datetime as dt

import dagster as dg
from dagster._core.test_utils import freeze_time

from nova_pipeline.definitions import ASSETS, defs
from nova_pipeline.schedules import FRESHNESS_CHECKS, FRESHNESS_SENSOR, build_freshness_checks
from tests.conftest import ALMATY


def evaluate_freshness(
    pipeline, at: dt.datetime, checks=FRESHNESS_CHECKS
) -> dict[str, dg.AssetCheckEvaluation]:
    with freeze_time(at):
        result = dg.materialize(
            [*ASSETS, *checks],
            selection=dg.AssetSelection.checks(*checks),
            resources=pipeline.resources,
            instance=pipeline.instance,
        )
    return {e.asset_key.to_user_string(): e for e in result.get_asset_check_evaluations()}


def test_yesterday_missing_fails_after_the_deadline_even_after_backfilling_older_days(
    make_pipeline,
):
    pipeline = make_pipeline()
    after_deadline = dt.datetime(2026, 11, 20, 9, 30, tzinfo=ALMATY)
    before_deadline = dt.datetime(2026, 11, 20, 8, 59, tzinfo=ALMATY)

    pipeline.run("2026-11-16", "2026-11-18")
    late = evaluate_freshness(pipeline, after_deadline)
    assert len(late) == len(ASSETS) + 1  # call_sms_events and call_sms_rejects share a step
    for key, evaluation in late.items():
        assert not evaluation.passed, key
        assert "2026-11-19" in evaluation.description

    early = evaluate_freshness(pipeline, before_deadline)
    assert all(e.passed for e in early.values()), "before 09:00 the day before yesterday counts"

    pipeline.run("2026-11-19")
    fresh = evaluate_freshness(pipeline, after_deadline)
    assert all(e.passed for e in fresh.values())

    next_day = evaluate_freshness(pipeline, after_deadline + dt.timedelta(days=1))
    assert not any(e.passed for e in next_day.values())


def test_the_sensor_asks_for_each_check_that_the_ui_describes_with_its_deadline():
    graph = defs.resolve_asset_graph()
    freshness = {key for key in graph.asset_check_keys if key.name == "freshness_check"}
    assert {key.asset_key for key in freshness} == graph.get_all_asset_keys()
    for key in freshness:
        description = graph.get_check_spec(key).description
        assert description.startswith(
            "Yesterday is in by 09:00 provider time (NOVA_FRESHNESS_DEADLINE, Asia/Almaty)"
        ), key

    with dg.instance_for_test() as instance:
        context = dg.build_sensor_context(instance=instance, definitions=defs)
        requests = FRESHNESS_SENSOR.evaluate_tick(context).run_requests
    assert [set(r.asset_check_keys) for r in requests] == [freshness]


def test_another_deadline_moves_the_day_asked_for_and_the_description(make_pipeline):
    pipeline = make_pipeline()
    pipeline.run("2026-11-18")
    checks = build_freshness_checks("07:30")
    for spec in (spec for c in checks for spec in c.check_specs):
        assert "Yesterday is in by 07:30 provider time" in spec.description

    at_7_45 = evaluate_freshness(pipeline, dt.datetime(2026, 11, 20, 7, 45, tzinfo=ALMATY), checks)
    assert not any(e.passed for e in at_7_45.values())
    assert all("2026-11-19" in e.description for e in at_7_45.values())
    at_7_15 = evaluate_freshness(pipeline, dt.datetime(2026, 11, 20, 7, 15, tzinfo=ALMATY), checks)
    assert all(e.passed for e in at_7_15.values()), "before 07:30 the day before yesterday counts"
