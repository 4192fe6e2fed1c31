"""A run of several days (the daily run's four, a backfill's batch) records one
materialization per day: each must carry that day's figures, as the UI shows them on the
day's partition and plots them day by day, not the run's totals once per day."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

import dagster as dg

from tests.conftest import NOW, day_metadata, run_logs

DAYS = ["2026-11-17", "2026-11-18", "2026-11-19", "2026-11-20"]
"""At NOW the provider has synced the 19th but not the 20th: its pull is empty."""


def per_day(pipeline, table: str, cost: bool = True) -> dict[str, tuple]:
    """Rows (and euro) of each day of the run in a table; zeros for a day with none."""
    found = {
        day.isoformat(): rest
        for day, *rest in pipeline.sql(
            f"SELECT day, count(*){', sum(cost_eur)' if cost else ''} FROM {table} GROUP BY day"
        )
    }
    return {day: tuple(found.get(day, [0, Decimal(0)][: 1 + cost])) for day in DAYS}


def figures(result, asset: str, *keys: str) -> dict[str, tuple]:
    return {day: tuple(m[k] for k in keys) for day, m in day_metadata(result, asset).items()}


def test_each_day_of_a_range_run_carries_its_own_figures(make_pipeline):
    pipeline = make_pipeline(faults={"bad_items": 0.3})
    result = pipeline.run(DAYS[0], DAYS[-1])
    assert result.success

    landed = {
        day.isoformat(): rest
        for day, *rest in pipeline.sql(
            "SELECT day, count(*), count(*) FILTER (WHERE NOT conforms), "
            "sum(item_count) FILTER (WHERE selector = 'all'), "
            "sum(item_count) FILTER (WHERE selector <> 'all') FROM call_sms_raw_pages GROUP BY day"
        )
    }
    keys = ["dagster/row_count", "pages_nonconforming", "items_all_pull", "items_group_pulls"]
    assert figures(result, "call_sms_raw_pages", *keys) == {
        day: tuple(landed.get(day, (0, 0, 0, 0))) for day in DAYS
    }
    assert landed[DAYS[-1]] == [4, 0, 0, 0], "pulled before its sync: each pull's empty page"
    per_pull = {day: {} for day in DAYS}
    for day, selector, items in pipeline.sql(
        "SELECT day, selector, sum(item_count) FROM call_sms_raw_pages GROUP BY ALL ORDER BY ALL"
    ):
        per_pull[day.isoformat()][selector] = items
    assert figures(result, "call_sms_raw_pages", "items_per_pull") == {
        day: (pulls,) for day, pulls in per_pull.items()
    }
    assert per_pull[DAYS[-1]] == {"all": 0, "g_1": 0, "g_2": 0, "g_3": 0}
    assert all(len(per_pull[day]) == 4 and min(per_pull[day].values()) > 0 for day in DAYS[:-1])
    assert any(
        message.startswith(f"no items for ['{DAYS[-1]}']: the provider may not have synced")
        for message in run_logs(pipeline, result)
    ), "the run's log names the empty day"
    assert len({landed[day][2] for day in DAYS[:-1]}) == 3
    assert sum(bad for _, bad, _, _ in landed.values()) > 0

    events = per_day(pipeline, "call_sms_events")
    assert figures(result, "call_sms_events", "dagster/row_count", "cost_eur_exact") == {
        day: (n, str(cost)) for day, (n, cost) in events.items()
    }
    assert events[DAYS[-1]] == (0, 0) and all(events[d][0] > 0 for d in DAYS[:-1])
    rejects = per_day(pipeline, "call_sms_rejects", cost=False)
    assert figures(result, "call_sms_rejects", "dagster/row_count") == rejects
    assert sum(n for (n,) in rejects.values()) > 0
    assert figures(result, "sim_group_membership", "dagster/row_count") == per_day(
        pipeline, "sim_group_membership", cost=False
    )
    for table in ("sim_daily_cost", "group_daily_cost"):
        assert figures(result, table, "dagster/row_count", "cost_eur", "cost_eur_exact") == {
            day: (n, float(cost), str(cost)) for day, (n, cost) in per_day(pipeline, table).items()
        }, table

    assert all(
        "sims_changed" not in m and "changes" not in m
        for m in day_metadata(result, "sim_daily_cost").values()
    ), "a first run restates nothing: no SIM is listed as changed"

    tables = {m["per_day"] for m in day_metadata(result, "call_sms_events").values()}
    assert len(tables) == 1, "the run's table is the same on each of its days"
    assert [row.split("|")[1].strip() for row in tables.pop().splitlines()[2:]] == DAYS

    shown = pipeline.instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=dg.AssetKey("call_sms_events"), asset_partitions=[DAYS[1]]),
        limit=1,
    ).records[0]
    assert shown.asset_materialization.metadata["dagster/row_count"].value == events[DAYS[1]][0]


def test_a_rerun_gives_each_day_its_previous_cost_and_changed_sims(make_pipeline):
    pipeline = make_pipeline()
    pipeline.run(DAYS[0], DAYS[-1])
    sim_costs = "SELECT day, sim_id, cost_eur FROM sim_daily_cost"
    before = {(day.isoformat(), sim): cost for day, sim, cost in pipeline.sql(sim_costs)}
    events_before = per_day(pipeline, "call_sms_events")

    pipeline.sim.simulator.set_now(NOW + dt.timedelta(days=2))  # two more syncs
    result = pipeline.run(DAYS[0], DAYS[-1])
    after = {(day.isoformat(), sim): cost for day, sim, cost in pipeline.sql(sim_costs)}
    changed = {
        day: sum(
            before.get(key) != after.get(key)
            for key in before.keys() | after.keys()
            if key[0] == day
        )
        for day in DAYS
    }
    previous = {day: sum(cost for (d, _), cost in before.items() if d == day) for day in DAYS}
    assert figures(result, "sim_daily_cost", "previous_cost_eur_exact", "sims_changed") == {
        day: (str(previous[day]) if previous[day] else "none", changed[day]) for day in DAYS
    }
    assert figures(result, "call_sms_events", "previous_cost_eur_exact") == {
        day: (str(cost) if n else "none",) for day, (n, cost) in events_before.items()
    }
    assert changed[DAYS[0]] == 0, "the 17th had all its syncs before the first run"
    assert changed[DAYS[1]] > 0, "late and re-rated records"
    assert changed[DAYS[-1]] == sum(day == DAYS[-1] for day, _ in after) > 0, "the 20th synced"
