"""Freshness knows about partitions: yesterday must be in by 09:00 provider time."""

from __future__ import annotations

import datetime as dt

import dagster as dg
from dagster._core.test_utils import freeze_time

from nova_pipeline.definitions import ASSETS
from nova_pipeline.schedules import FRESHNESS_CHECKS
from tests.conftest import ALMATY


def evaluate_freshness(pipeline, at: dt.datetime) -> dict[str, dg.AssetCheckEvaluation]:
    with freeze_time(at):
        result = dg.materialize(
            [*ASSETS, *FRESHNESS_CHECKS],
            selection=dg.AssetSelection.checks(*FRESHNESS_CHECKS),
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
