"""The daily volume check: a day far off the days before it is flagged, e.g. a day
pulled before the provider's sync brought it in."""

from __future__ import annotations

import datetime as dt
import statistics

import dagster as dg
import duckdb

from nova_pipeline.checks import ALL_DAYS, ASSET_CHECKS, daily_volume_usual
from nova_pipeline.demo import failed_checks
from nova_pipeline.warehouse import ensure_schema
from tests.conftest import (
    NOW,
    check_evaluation,
    index_page,
    served_items,
    store_events,
    table_rows,
)


def evaluation(result):
    return check_evaluation(result, "daily_volume_usual")


def test_a_day_pulled_before_the_providers_sync_is_flagged_then_clears(make_pipeline):
    pipeline = make_pipeline()
    history = [dt.date(2026, 11, d) for d in (16, 17, 18, 19)]
    first = pipeline.run(history[0].isoformat(), history[-1].isoformat())
    assert evaluation(first).passed

    unsynced = dt.date(2026, 11, 20)  # appears after the provider's sync of the 21st
    early = pipeline.run(unsynced.isoformat())
    assert early.success, "a warning does not stop the rollups"
    check = evaluation(early)
    assert not check.passed and check.severity.value == "WARN"
    assert check.metadata["failing_days"].value == [unsynced.isoformat()]
    assert "NOVA_LOOKBACK_DAYS" in check.description
    counts = [len(served_items(pipeline.sim.api_url, day)) for day in history]
    # A day with no event is one row, of all types: each type's would say the same.
    [(day, kind, events, usual, compared, ratio, weekday)] = table_rows(
        check.metadata["detail"].value
    )
    assert (day, kind, events, compared, ratio, weekday) == (
        unsynced.isoformat(),
        "all",
        "0",
        "4",
        "0.0",
        "-",
    )
    assert float(usual) == statistics.median(counts)
    # The UI's "Execute all" judges every day pulled, the one that came back empty too:
    # each of its pulls left its closing empty page in the raw index.
    with duckdb.connect(str(pipeline.root / "nova.duckdb"), read_only=True) as con:
        every_day = daily_volume_usual(con, ALL_DAYS).result()
    assert every_day.metadata["failing_days"].value == [unsynced.isoformat()]

    pipeline.sim.simulator.set_now(NOW + dt.timedelta(days=1))
    synced = pipeline.run(unsynced.isoformat())
    assert evaluation(synced).passed
    [(stored,)] = pipeline.sql("SELECT count(*) FROM call_sms_events WHERE day = ?", unsynced)
    assert stored == len(served_items(pipeline.sim.api_url, unsynced)) > 0.5 * min(counts)


def test_a_range_run_records_every_check_against_each_of_its_days(make_pipeline):
    """The daily run is yesterday plus the days before it: the UI's per-day check status
    must come from each day's own result, not one verdict for the run."""
    pipeline = make_pipeline()
    days = [dt.date(2026, 11, d).isoformat() for d in (16, 17, 18, 19, 20)]
    unsynced = days[-1]  # appears after the provider's sync of the 21st
    result = pipeline.run(days[0], days[-1])
    assert result.success, "a warning does not stop the rollups"

    volume = {
        e.partition: e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "daily_volume_usual"
    }
    assert sorted(volume) == days
    assert [day for day, e in volume.items() if not e.passed] == [unsynced]
    assert volume[unsynced].severity.value == "WARN" and unsynced in volume[unsynced].description
    assert volume[days[0]].description == f"passed for {days[0]}"
    assert failed_checks(result) == [
        f"WARN check daily_volume_usual: {volume[unsynced].description}"
    ], "make demo prints the one failed result of the run, though the run succeeded"

    keys = [key for check in ASSET_CHECKS for key in check.check_keys]
    expected = {
        (key.name, day): "FAILED"
        if (key.name, day) == ("daily_volume_usual", unsynced)
        else "SUCCEEDED"
        for key in keys
        for day in days
    }
    infos = pipeline.instance.event_log_storage.get_asset_check_partition_info(keys)
    assert {
        (i.check_key.name, i.partition_key): i.latest_execution_status.value for i in infos
    } == (expected)
    assert all(i.is_current for i in infos), "each result targets its day's materialization"
    materialized = pipeline.instance.get_materialized_partitions(dg.AssetKey("call_sms_events"))
    assert materialized == set(days)


def test_the_bands_the_history_window_and_the_days_judged(tmp_path):
    d = [dt.date(2026, 10, 1) + dt.timedelta(days=n) for n in range(31)]
    counts = {d[0]: 100, d[1]: 300, d[2]: 100, d[3]: 50, d[4]: 201, d[6]: 60, d[30]: 1}
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        ensure_schema(con)

        def store(n: int, day: dt.date, events: int) -> None:
            con.execute(
                "INSERT INTO call_sms_events (sid, occurred_at, day, type, cost_eur, sim_id, "
                "out_of_window, source_page) "
                "SELECT $n * 1000 + range, now(), $day, 'call', 1, 1, false, 0 FROM range($events)",
                {"n": n, "day": day, "events": events},
            )

        for n, (day, events) in enumerate(counts.items()):
            store(n, day, events)
        # One type only: a row for it would repeat the day's, so none is shown.
        # d1 (1 day before it), d2 (2) are not judged; d3 is at half of the median 100,
        # d4 above twice it, d5 has no event, d6 compares with the 5 stored days before.
        week = daily_volume_usual(con, (d[0], d[6])).result()
        # Nothing stored in the 14 days before d30 or d25: too little history to compare
        # with, so only a day with no event at all is flagged.
        alone = daily_volume_usual(con, (d[30], d[30])).result()
        empty_alone = daily_volume_usual(con, (d[25], d[25])).result()
        # d17 (10 events) compares with d3, d4 and d6, enough days to judge it by: d3 is
        # 14 days before it, d2 (15) is not.
        store(len(counts), d[17], 10)
        edge = daily_volume_usual(con, (d[17], d[17])).result()
        index_page(con, d[4], 1)
        index_page(con, d[6], 1)
        pulled = daily_volume_usual(con, ALL_DAYS).result()

    assert not week.passed and week.severity.value == "WARN"
    assert week.metadata["failing_days"].value == [str(d[4]), str(d[5])]
    assert table_rows(week.metadata["detail"].value) == [
        [str(d[4]), "all", "201", "100.0", "4", "2.01", "-"],
        [str(d[5]), "all", "0", "100.0", "5", "0.0", "-"],
    ]
    assert alone.passed
    assert table_rows(empty_alone.metadata["detail"].value) == [
        [str(d[25]), "all", "0", "-", "0", "-", "-"]
    ]
    assert table_rows(edge.metadata["detail"].value) == [
        [str(d[17]), "all", "10", "60.0", "3", "0.17", "-"]
    ]
    assert pulled.metadata["failing_days"].value == [str(d[4])]


def test_a_type_that_stops_arriving_is_flagged_though_the_days_total_is_usual(tmp_path):
    d = [dt.date(2026, 10, 1) + dt.timedelta(days=n) for n in range(10)]
    calls, received, sent = (300, "call", "0.3"), (300, "in_sms", "0"), (200, "out_sms", "0.04")
    ussd = (50, "ussd", "0")  # too few a day for chance to be told from a change
    stored = {day: [calls, received, sent, ussd] for day in d[:6]}
    # No outgoing SMS on d2, with 2 days before it: too little history to judge a type by.
    stored[d[2]] = [calls, received, ussd]
    # No outgoing SMS, nor USSD: 650 events against the usual 850 (0.76), in range.
    stored[d[6]] = [calls, received]
    # More than twice the calls (700), fewer than half the incoming SMS (140): 1,090 in all.
    stored[d[7]] = [(700, "call", "0.3"), (140, "in_sms", "0"), ussd]
    # d8 has no event at all: a row for each type would say what the day's says.
    stored[d[9]] = [calls, received, sent, ussd]
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        store_events(con, stored)
        judged = daily_volume_usual(con, (d[0], d[9])).result()

    assert not judged.passed and judged.severity.value == "WARN"
    assert judged.metadata["failing_days"].value == [str(d[6]), str(d[7]), str(d[8])]
    assert table_rows(judged.metadata["detail"].value) == [
        [str(d[6]), "out_sms", "0", "200.0", "5", "0.0", "-"],
        [str(d[7]), "call", "700", "300.0", "7", "2.33", "-"],
        [str(d[7]), "in_sms", "140", "300.0", "7", "0.47", "-"],
        [str(d[7]), "out_sms", "0", "200.0", "5", "0.0", "-"],
        [str(d[8]), "all", "0", "850.0", "8", "0.0", "-"],
    ]


def test_a_fleets_weekends_are_judged_against_its_weekends(tmp_path):
    d = [dt.date(2026, 10, 5) + dt.timedelta(days=n) for n in range(34)]  # from a Monday
    weekday = [(1000, "call", "0.1"), (400, "out_sms", "0.04"), (300, "ussd", "0")]
    weekend = [(300, "call", "0.1"), (120, "out_sms", "0.04"), (40, "ussd", "0")]
    stored = {day: weekday if day.weekday() < 5 else weekend for day in d[:28]}
    stored[d[23]] = weekend  # a Wednesday as quiet as a Sunday
    # USSD at 10 on a Saturday, against the 40 of Saturdays: too few to be told from chance.
    stored[d[26]] = [*weekend[:2], (10, "ussd", "0")]
    stored[d[27]] = [weekend[0], weekend[2]]  # a Sunday without outgoing SMS
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        store_events(con, stored)
        judged = daily_volume_usual(con, (d[0], d[27])).result()

    # The first two weekends warn: fewer than 2 of the same weekday to compare with.
    # From the third on, a weekend is as usual as the weekends before it.
    failing = [d[5], d[6], d[12], d[13], d[23], d[27]]
    assert judged.metadata["failing_days"].value == [str(day) for day in failing]
    rows = table_rows(judged.metadata["detail"].value)
    assert [str(d[12]), "all", "460", "1700.0", "12", "0.27", "-"] in rows
    assert [row for row in rows if row[0] >= str(d[21])] == [
        [str(d[23]), "all", "460", "1700.0", "14", "0.27", "1700.0"],
        [str(d[23]), "call", "300", "1000.0", "14", "0.3", "1000.0"],
        [str(d[23]), "out_sms", "120", "400.0", "14", "0.3", "400.0"],
        [str(d[23]), "ussd", "40", "300.0", "14", "0.13", "300.0"],
        [str(d[27]), "out_sms", "0", "400.0", "14", "0.0", "120.0"],
    ]

    # A Saturday after a week of weekdays, with 2 Saturdays stored 21 and 28 days before
    # it: as usual as they are. With the one 21 days before only, it warns.
    def saturday_after(saturdays: list[dt.date]):
        later = {day: weekday for day in d[28:33]} | dict.fromkeys([*saturdays, d[33]], weekend)
        with duckdb.connect(str(tmp_path / f"{len(saturdays)}.duckdb")) as con:
            store_events(con, later)
            return daily_volume_usual(con, (d[33], d[33])).result()

    assert saturday_after([d[5], d[12]]).passed
    alone = saturday_after([d[12]])
    assert [str(d[33]), "all", "460", "1700.0", "5", "0.27", "-"] in table_rows(
        alone.metadata["detail"].value
    )
