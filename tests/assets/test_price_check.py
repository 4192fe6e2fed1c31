"""The average cost of an event against the days before it: a change of price, which every
other check passes (the sums still reconcile to the cent), is flagged."""

from __future__ import annotations

import datetime as dt
import statistics

import duckdb
import pytest

from nova_pipeline.checks import ALL_DAYS, cost_per_event_usual
from tests.conftest import (
    FAULT_HISTORY,
    FAULTY_DAY,
    index_page,
    served_items,
    store_events,
    table_rows,
    warning_of_a_fault,
)


def average_cost(api_url: str, day: dt.date, event_type: str) -> float:
    items = served_items(api_url, day)
    return statistics.fmean(item["session_cost"] for item in items if item["type"] == event_type)


def test_costs_sent_in_cents_are_flagged_and_clear_once_the_day_is_sent_in_euro(
    make_pipeline, start_simulator
):
    pipeline = make_pipeline()
    check = warning_of_a_fault(pipeline, start_simulator, "cost_in_cents", "cost_per_event_usual")
    # A row for each average known well enough to judge: at 40 SIMs not the day's over all
    # types (calls' costs spread wide), but that of outgoing SMS (their prices spread narrow).
    rows = table_rows(check.metadata["detail"].value)
    assert "all" not in [row[1] for row in rows] and "out_sms" in [row[1] for row in rows]
    euro = pipeline.sim.api_url
    for flagged, event_type, each, usual, compared, ratio, weekday in rows:
        expected_usual = statistics.median(average_cost(euro, d, event_type) for d in FAULT_HISTORY)
        assert (flagged, compared, weekday) == (FAULTY_DAY.isoformat(), "3", "-")
        assert float(each) == pytest.approx(
            100 * average_cost(euro, FAULTY_DAY, event_type), abs=1e-6
        )
        assert float(usual) == pytest.approx(expected_usual, abs=1e-6)
        assert float(ratio) == pytest.approx(float(each) / expected_usual, abs=0.01)


def test_the_average_not_the_total_is_judged_and_a_day_with_no_event_is_left_to_volume(
    tmp_path,
):
    d = [dt.date(2026, 10, 1) + dt.timedelta(days=n) for n in range(9)]
    stored = {
        d[0]: [(100, "call", "0.10")],
        d[1]: [(100, "call", "0.10")],
        d[2]: [(100, "call", "0.10")],
        d[3]: [(100, "call", "0.05")],  # exactly half the median: within the band
        # an average of 0.21: above twice 0.10
        d[4]: [(50, "call", "0.02"), (50, "call", "0.40")],
        # d[5]: no event at all, which daily_volume_usual flags
        d[6]: [(1000, "call", "0.10")],  # ten times the events at the usual price
        d[7]: [(100, "call", "10.00")],  # cents sent as euro
        d[8]: [(100, "call", "0")],  # every event free
    }
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        store_events(con, stored)
        judged = cost_per_event_usual(con, (d[0], d[8])).result()
        nothing_pulled = cost_per_event_usual(con, ALL_DAYS).result()
        index_page(con, d[7], 100)
        pulled = cost_per_event_usual(con, ALL_DAYS).result()

    assert not judged.passed and judged.severity.value == "WARN"
    # Every event a call: a row for calls would repeat the day's, so none is shown.
    assert table_rows(judged.metadata["detail"].value) == [
        [str(d[4]), "all", "0.21", "0.1", "4", "2.1", "-"],
        [str(d[7]), "all", "10.0", "0.1", "6", "100.0", "-"],
        [str(d[8]), "all", "0.0", "0.1", "7", "0.0", "-"],
    ]
    # "Execute all" judges the days pulled: none at first, then the one indexed.
    assert nothing_pulled.passed and nothing_pulled.description == "passed for all days"
    assert pulled.metadata["failing_days"].value == [str(d[7])]


def test_a_new_price_of_one_type_is_flagged_where_other_types_carry_the_cost(tmp_path):
    d = [dt.date(2026, 10, 1) + dt.timedelta(days=n) for n in range(8)]
    usual = [(1000, "call", "0.30"), (1000, "out_sms", "0.04"), (1000, "in_sms", "0")]
    # USSD charged one in twenty: their average on a day of 200 is too uncertain to judge
    # alone (its standard error is 31% of it), so a day with none charged is no alarm.
    sparse = [(190, "ussd", "0"), (10, "ussd", "0.01")]
    stored = {day: usual + sparse for day in d[:3]}
    # Outgoing SMS at 0.10 instead of 0.04: the day's average only moves from 0.1063 to 0.1250.
    stored[d[3]] = [usual[0], (1000, "out_sms", "0.10"), usual[2], *sparse]
    # Incoming SMS charged where they were free (a ratio to 0 is "-"), and no USSD charged.
    stored[d[4]] = [usual[0], usual[1], (1000, "in_sms", "0.01"), (200, "ussd", "0")]
    # Twice the calls' share of events, at the usual prices: the mix, not a price.
    stored[d[5]] = [(2000, "call", "0.30"), usual[1], (500, "in_sms", "0"), *sparse]
    # Costs in cents: each type judged alone shows it (free ones stay free), besides the
    # day's average.
    stored[d[6]] = [(1000, "call", "30"), (1000, "out_sms", "4"), usual[2], *sparse]
    # Ten calls, one of 5 €: an average of 0.50 € is five times the usual, but its standard
    # error is as large as itself: chance, not a price, so neither it nor calls is judged.
    stored[d[7]] = [(9, "call", "0"), (1, "call", "5")]
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        store_events(con, stored)
        judged = cost_per_event_usual(con, (d[0], d[7])).result()

    assert not judged.passed and judged.severity.value == "WARN"
    assert judged.metadata["failing_days"].value == [str(d[3]), str(d[4]), str(d[6])]
    assert table_rows(judged.metadata["detail"].value) == [
        [str(d[3]), "out_sms", "0.1", "0.04", "3", "2.5", "-"],
        [str(d[4]), "in_sms", "0.01", "0.0", "4", "-", "-"],
        [str(d[6]), "all", "10.625031", "0.107828", "6", "98.54", "-"],
        [str(d[6]), "call", "30.0", "0.3", "6", "100.0", "-"],
        [str(d[6]), "out_sms", "4.0", "0.04", "6", "100.0", "-"],
    ]


def test_a_weekly_mix_of_types_is_judged_against_the_same_weekday(tmp_path):
    d = [dt.date(2026, 10, 5) + dt.timedelta(days=n) for n in range(21)]  # from a Monday
    # Calls on weekdays, SMS at weekends: a weekend's average is 0.48 of a weekday's.
    weekday = [(1000, "call", "0.10"), (100, "out_sms", "0.04")]
    weekend = [(50, "call", "0.10"), (500, "out_sms", "0.04")]
    stored = {day: weekday if day.weekday() < 5 else weekend for day in d}
    stored[d[20]] = [(50, "call", "10"), (500, "out_sms", "4")]  # a Sunday sent in cents
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        store_events(con, stored)
        judged = cost_per_event_usual(con, (d[0], d[20])).result()

    # The first two weekends warn, with fewer than 2 of the same weekday to compare with.
    failing = [d[5], d[6], d[12], d[13], d[20]]
    assert judged.metadata["failing_days"].value == [str(day) for day in failing]
    rows = table_rows(judged.metadata["detail"].value)
    assert [str(d[13]), "all", "0.045455", "0.094545", "13", "0.48", "-"] in rows
    assert [row for row in rows if row[0] == str(d[20])] == [
        [str(d[20]), "all", "4.545455", "0.094545", "14", "48.08", "0.045455"],
        [str(d[20]), "call", "10.0", "0.1", "14", "100.0", "0.1"],
        [str(d[20]), "out_sms", "4.0", "0.04", "14", "100.0", "0.04"],
    ]
