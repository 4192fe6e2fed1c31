"""The average cost of an event against the days before it: a change of price, which every
other check passes (the sums still reconcile to the cent), is flagged."""

from __future__ import annotations

import datetime as dt
import statistics

import duckdb
import pytest

from nova_pipeline.checks import ALL_DAYS, cost_per_event_usual
from nova_pipeline.warehouse import ensure_schema
from tests.conftest import check_evaluation, index_page, served_items, table_rows


def average_cost(api_url: str, day: dt.date) -> float:
    costs = [item["session_cost"] for item in served_items(api_url, day)]
    return statistics.fmean(costs)


def test_costs_sent_in_cents_are_flagged_and_clear_once_the_day_is_sent_in_euro(
    make_pipeline, start_simulator
):
    pipeline = make_pipeline()
    euro = pipeline.sim
    history = [dt.date(2026, 11, d) for d in (16, 17, 18)]
    assert check_evaluation(pipeline.run("2026-11-16", "2026-11-18"), "cost_per_event_usual").passed

    day = dt.date(2026, 11, 19)
    cents = start_simulator(faults={"cost_in_cents": 1.0})
    pipeline.reconfigure("nova_api", api_url=cents.api_url)
    sent_in_cents = pipeline.run(day.isoformat())
    assert sent_in_cents.success, "a warning does not stop the rollups"
    check = check_evaluation(sent_in_cents, "cost_per_event_usual")
    assert not check.passed and check.severity.value == "WARN"
    assert check.metadata["failing_days"].value == [day.isoformat()]
    [(flagged, each, usual, compared, ratio)] = table_rows(check.metadata["detail"].value)
    expected_usual = statistics.median(average_cost(euro.api_url, d) for d in history)
    assert (flagged, compared) == (day.isoformat(), "3")
    assert float(each) == pytest.approx(100 * average_cost(euro.api_url, day), abs=1e-6)
    assert float(usual) == pytest.approx(expected_usual, abs=1e-6)
    assert float(ratio) == pytest.approx(
        100 * average_cost(euro.api_url, day) / expected_usual, abs=0.01
    )
    others = [
        e for e in sent_in_cents.get_asset_check_evaluations() if e.check_name != check.check_name
    ]
    assert all(e.passed for e in others), "the sums reconcile: only the price check sees it"

    pipeline.reconfigure("nova_api", api_url=euro.api_url)
    assert check_evaluation(pipeline.run(day.isoformat()), "cost_per_event_usual").passed


def test_the_average_not_the_total_is_judged_and_a_day_with_no_event_is_left_to_volume(
    tmp_path,
):
    d = [dt.date(2026, 10, 1) + dt.timedelta(days=n) for n in range(9)]
    # Each day's events as (how many, euro each).
    stored = {
        d[0]: [(100, "0.10")],
        d[1]: [(100, "0.10")],
        d[2]: [(100, "0.10")],
        d[3]: [(100, "0.05")],  # exactly half the median: within the band
        d[4]: [(50, "0.02"), (50, "0.40")],  # an average of 0.21: above twice 0.10
        # d[5]: no event at all, which daily_volume_usual flags
        d[6]: [(1000, "0.10")],  # ten times the events at the usual price
        d[7]: [(100, "10.00")],  # cents sent as euro
        d[8]: [(100, "0")],  # every event free
    }
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        ensure_schema(con)
        sid = 0
        for day, groups in stored.items():
            for events, cost in groups:
                con.execute(
                    "INSERT INTO call_sms_events (sid, occurred_at, day, type, cost_eur, sim_id, "
                    "out_of_window, source_page) "
                    "SELECT $sid + range, now(), $day, 'call', $cost, 1, false, 0 "
                    "FROM range($events)",
                    {"sid": sid, "day": day, "cost": cost, "events": events},
                )
                sid += events
        judged = cost_per_event_usual(con, (d[0], d[8])).result()
        nothing_pulled = cost_per_event_usual(con, ALL_DAYS).result()
        index_page(con, d[7], 100)
        pulled = cost_per_event_usual(con, ALL_DAYS).result()

    assert not judged.passed and judged.severity.value == "WARN"
    assert table_rows(judged.metadata["detail"].value) == [
        [str(d[4]), "0.21", "0.1", "4", "2.1"],
        [str(d[7]), "10.0", "0.1", "6", "100.0"],
        [str(d[8]), "0.0", "0.1", "7", "0.0"],
    ]
    # "Execute all" judges the days pulled: none at first, then the one indexed.
    assert nothing_pulled.passed and nothing_pulled.description == "passed for all days"
    assert pulled.metadata["failing_days"].value == [str(d[7])]
