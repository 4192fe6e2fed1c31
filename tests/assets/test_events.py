"""Typed events, quarantine, duplicates, time window, and the six tables."""

from __future__ import annotations

import datetime as dt
import json
import os
from decimal import Decimal

import dagster as dg
import duckdb

from nova_pipeline.simulator import FleetSpec
from nova_pipeline.simulator.faults import bad_item
from nova_pipeline.transforms.events import DELETE_REPEATED_COPIES_SQL, REPEATED_COPIES_SQL
from nova_pipeline.warehouse import TABLES, ensure_schema
from tests.conftest import (
    DAY,
    SMALL_FLEET,
    Pipeline,
    bad_item_reason,
    check_evaluation,
    day_metadata,
    landed_lines,
    run_logs,
    served_items,
    table_rows,
)

DAY_KEY = DAY.isoformat()


def test_events_are_typed_one_row_per_sid(make_pipeline):
    pipeline = make_pipeline()
    pipeline.run(DAY_KEY)
    served = {i["sid"]: i for i in served_items(pipeline.sim.api_url, DAY)}
    rows = pipeline.sql(
        "SELECT sid, epoch(occurred_at)::BIGINT, day, type, to_number, cost_eur, sim_id, "
        "sim_number, iccid, sim_name, out_of_window FROM call_sms_events"
    )
    assert len(rows) == len(served)
    for sid, ts, day, type_, to, cost, sim_id, number, iccid, name, outside in rows:
        item = served[sid]
        assert (ts, type_, to, sim_id, number, iccid, name) == (
            item["date"],
            item["type"],
            item["to_number"],
            item["id"],
            item["original_number"],
            item["iccid"],
            item["name"],
        )
        assert cost == Decimal(str(item["session_cost"])) and day == DAY and not outside


def test_every_page_is_kept_verbatim_and_indexed(make_pipeline):
    pipeline = make_pipeline()
    result = pipeline.run(DAY_KEY)
    pages = pipeline.sql(
        "SELECT selector, page, item_count, landing_file, line, request, fetched_at "
        "FROM call_sms_raw_pages ORDER BY selector, page"
    )
    assert {p[0] for p in pages} == {"all", "g_1", "g_2", "g_3"}
    served = served_items(pipeline.sim.api_url, DAY)
    assert sum(p[2] for p in pages if p[0] == "all") == len(served)
    meta = result.asset_materializations_for_node("call_sms_raw_pages")[0].metadata
    assert meta["items_all_pull"].value == len(served)
    assert meta["items_group_pulls"].value == sum(
        len(served_items(pipeline.sim.api_url, DAY, f"g_{g}")) for g in (1, 2, 3)
    )
    files = {pipeline.landed(p[3]) for p in pages}
    assert meta["landed_mb"].value == round(sum(os.path.getsize(f) for f in files) / 1e6, 2)
    assert meta["landed_mb"].value < meta["body_mb"].value / 3
    page_of_sid = {}
    for selector, page, count, path, line, request, fetched_at in pages:
        record = json.loads(landed_lines(pipeline.landed(path))[line])
        assert (record["selector"], record["page"]) == (selector, page)
        assert dt.datetime.fromisoformat(record["fetched_at"]) == fetched_at
        assert len(record["body"]["result"]["items"]) == count
        assert json.loads(request)["body"]["page"] == page
        if selector == "all":
            page_of_sid |= {item["sid"]: page for item in record["body"]["result"]["items"]}
    assert len(set(page_of_sid.values())) > 1
    assert dict(pipeline.sql("SELECT sid, source_page FROM call_sms_events")) == page_of_sid


def test_bad_items_are_quarantined_with_their_reason_and_totals_unchanged(
    make_pipeline, start_simulator
):
    clean = make_pipeline()
    clean.run(DAY_KEY)
    faulty = make_pipeline(faults={"bad_items": 0.5})
    result = faulty.run(DAY_KEY)
    injected = [
        json.loads(raw)
        for made in faulty.sim.simulator.injected_bad_items.values()
        for _, raw in made
    ]
    rejects = faulty.sql("SELECT item, reason, selector FROM call_sms_rejects")
    assert len(injected) >= 5
    assert sorted(json.dumps(json.loads(r[0]), sort_keys=True) for r in rejects) == sorted(
        json.dumps(i, sort_keys=True) for i in injected
    )
    by_kind = [pair for page in faulty.sim.simulator.injected_bad_items.values() for pair in page]
    assert {r[1] for r in rejects} == {bad_item_reason(k, json.loads(raw)) for k, raw in by_kind}
    assert faulty.sql("SELECT sum(cost_eur), count(*) FROM call_sms_events") == clean.sql(
        "SELECT sum(cost_eur), count(*) FROM call_sms_events"
    )
    assert faulty.sql("SELECT * FROM group_daily_cost ORDER BY day, group_id") == clean.sql(
        "SELECT * FROM group_daily_cost ORDER BY day, group_id"
    )
    share = check_evaluation(result, "rejects_share")
    assert not share.passed and DAY_KEY in share.description
    events = result.asset_materializations_for_node("call_sms_events")[0].metadata
    assert events["duplicates_collapsed"].value == 0, "a quarantined item is no duplicate"
    assert events["items_with_extra_fields"].value == 0, "a bad item is no schema drift"
    landed = faulty.sql(
        "SELECT selector, page, landing_file FROM call_sms_raw_pages WHERE NOT conforms"
    )
    assert len(landed) == len(faulty.sim.simulator.injected_bad_items)
    raw = result.asset_materializations_for_node("call_sms_raw_pages")[0].metadata
    assert raw["pages_nonconforming"].value == len(landed)
    [quarantine] = [
        m.metadata
        for m in result.asset_materializations_for_node("call_sms_events")
        if m.asset_key == dg.AssetKey("call_sms_rejects")
    ]
    items = raw["items_all_pull"].value + raw["items_group_pulls"].value
    assert table_rows(quarantine["per_day"].value) == [[DAY_KEY, str(len(rejects)), str(items)]]
    assert {(selector, page) for selector, page, _ in landed} == set(
        faulty.sql("SELECT DISTINCT selector, page FROM call_sms_rejects")
    )
    assert all(path.endswith(f"{sel}.nonconforming.ndjson.zst") for sel, _, path in landed)
    indexed = faulty.sql("SELECT selector, page, landing_file, line FROM call_sms_raw_pages")
    files_of = {sel: {path for s, _, path, _ in indexed if s == sel} for sel, _, _ in landed}
    assert all(len(files) == 2 for files in files_of.values()), "a pull's pages, in two files"
    for selector, page, path, line in indexed:
        record = json.loads(landed_lines(faulty.landed(path))[line])
        assert (record["selector"], record["page"]) == (selector, page), f"{path}:{line}"


def test_a_high_reject_share_blocks_the_rollups(make_pipeline):
    pipeline = make_pipeline(faults={"bad_items": 1.0}, page_size=20)
    days = [(DAY - dt.timedelta(days=1)).isoformat(), DAY_KEY]
    result = pipeline.run(*days, raise_on_error=False)
    shares = {
        e.partition: e
        for e in result.get_asset_check_evaluations()
        if e.check_name == "rejects_share"
    }
    assert sorted(shares) == days
    for day, share in shares.items():
        assert not share.passed and share.severity.value == "ERROR" and day in share.description
    assert pipeline.sql("SELECT count(*) FROM sim_daily_cost") == [(0,)]
    assert not result.success
    key = dg.AssetCheckKey(dg.AssetKey("call_sms_events"), "rejects_share")
    recorded = pipeline.instance.event_log_storage.get_asset_check_partition_info([key])
    assert {i.partition_key: i.latest_execution_status.value for i in recorded} == {
        day: "FAILED" for day in days
    }


def on_every_page(pipeline, kind: str, page_size: int = 100) -> None:
    """One bad item of `kind` on every page of every pull of DAY, none other."""
    tz = pipeline.sim.simulator.dataset.tz
    day_start = int(dt.datetime.combine(DAY, dt.time(), tz).timestamp())
    for n, pull in enumerate(["all", "g_1", "g_2", "g_3"]):
        for page in range(100):
            key = ((DAY, DAY, (pull,), page_size), page)
            made = [(kind, bad_item(kind, n * 1000 + page, day_start))]
            pipeline.sim.simulator.injected_bad_items[key] = made


def test_a_key_sent_twice_on_pages_the_client_passed_is_quarantined_and_the_day_loads(
    make_pipeline,
):
    """msgspec keeps the last of a key sent twice, so such a page lands as conforming, and
    DuckDB's typed read refuses it: the day failed on every pull. Now the run judges its
    pages rule by rule: the item is quarantined and every total is the clean run's."""
    clean = make_pipeline()
    clean.run(DAY_KEY)
    faulty = make_pipeline(faults={"bad_items": 1.0})
    on_every_page(faulty, "duplicate_key")
    result = faulty.run(DAY_KEY)

    assert result.success
    assert faulty.sql("SELECT count(*) FROM call_sms_raw_pages WHERE NOT conforms") == [(0,)]
    pages = faulty.sql(
        "SELECT count(*) FROM call_sms_raw_pages WHERE selector = 'all' AND item_count > 0"
    )[0][0]
    assert faulty.sql("SELECT selector, reason, count(*) FROM call_sms_rejects GROUP BY ALL") == [
        ("all", "session_cost: sent more than once", pages)
    ]
    for table in ("call_sms_events", "sim_daily_cost", "sim_group_membership", "group_daily_cost"):
        assert faulty.sql(f"SELECT * FROM {table} ORDER BY ALL") == clean.sql(
            f"SELECT * FROM {table} ORDER BY ALL"
        ), table
    assert check_evaluation(result, "group_sids_in_account_pull").passed
    warned = [m for m in run_logs(faulty, result) if 'has duplicate key "session_cost"' in m]
    assert len(warned) == 3, "the events, the membership and the group check each fell back"


def test_a_nan_cost_on_every_page_is_quarantined_and_the_day_loads(make_pipeline):
    """NaN is not JSON, but what Python's `json.dumps` writes for a float that is not
    finite: the client once retried such a page as broken until the day failed, on every
    pull. Now the pages land as sent, the rules quarantine the items (of the group pulls
    too, as they judge nonconforming pages), and every total is the clean run's."""
    clean = make_pipeline(page_size=250)  # a bad item a page: under 1% of the items
    clean.run(DAY_KEY)
    faulty = make_pipeline(faults={"bad_items": 1.0}, page_size=250)
    on_every_page(faulty, "cost_not_finite", page_size=250)
    result = faulty.run(DAY_KEY)

    assert result.success
    pages = dict(faulty.sql("SELECT selector, count(*) FROM call_sms_raw_pages GROUP BY ALL"))
    nonconforming = "SELECT selector, count(*) FROM call_sms_raw_pages WHERE NOT conforms"
    assert dict(faulty.sql(f"{nonconforming} GROUP BY ALL")) == {
        pull: count - 1 for pull, count in pages.items()
    }, "every page but each pull's closing empty one"
    assert faulty.sql(
        "SELECT reason, item->>'$.session_cost', count(*) FROM call_sms_rejects GROUP BY ALL"
    ) == [("session_cost: expected a number, got NaN", "NaN", sum(pages.values()) - len(pages))]
    for table in ("call_sms_events", "sim_daily_cost", "sim_group_membership", "group_daily_cost"):
        assert faulty.sql(f"SELECT * FROM {table} ORDER BY ALL") == clean.sql(
            f"SELECT * FROM {table} ORDER BY ALL"
        ), table
    assert check_evaluation(result, "group_sids_in_account_pull").passed


def test_duplicate_items_across_pages_are_collapsed_and_counted(make_pipeline):
    clean = make_pipeline()
    clean.run(DAY_KEY)
    faulty = make_pipeline(faults={"duplicates": 1.0})
    result = faulty.run(DAY_KEY)
    assert faulty.sql(
        "SELECT count(*), count(DISTINCT sid), sum(cost_eur) FROM call_sms_events"
    ) == clean.sql("SELECT count(*), count(*), sum(cost_eur) FROM call_sms_events")
    meta = result.asset_materializations_for_node("call_sms_events")[0].metadata
    pages = faulty.sql(
        "SELECT count(*) FROM call_sms_raw_pages WHERE selector = 'all' AND item_count > 0"
    )[0][0]
    assert meta["duplicates_collapsed"].value == 3 * (pages - 1)
    assert meta["duplicates_kept_on_another_day"].value == 0
    assert not [m for m in run_logs(faulty, result) if "already kept on" in m]


def test_a_sid_served_for_two_days_is_kept_once_and_nothing_is_lost(make_pipeline):
    """The provider's report day reaches back before midnight, so each day also serves the
    last sids of the day before: each is stored once, the days' totals stay exact, and a
    day loaded later leaves a copy already stored for another day where it is."""
    d0, d1, d2, d3 = (DAY - dt.timedelta(days=n) for n in (3, 2, 1, 0))
    clean = make_pipeline()
    clean.run(d0.isoformat(), d3.isoformat())
    per_day = "SELECT day, count(*), sum(cost_eur) FROM call_sms_events GROUP BY day ORDER BY day"
    clean_days = {day: (n, cost) for day, n, cost in clean.sql(per_day)}
    before_d0 = served_items(clean.sim.api_url, d0 - dt.timedelta(days=1))[-3:]
    end_of_d0 = {i["sid"] for i in served_items(clean.sim.api_url, d0)[-3:]}

    faulty = make_pipeline(faults={"day_overlap": 1.0})
    result = faulty.run(d1.isoformat(), d3.isoformat())
    assert result.success
    assert all(e.passed for e in result.get_asset_check_evaluations())
    got = {day: (n, cost) for day, n, cost in faulty.sql(per_day)}
    figures = {
        day: (
            m["dagster/row_count"],
            m["duplicates_collapsed"],
            m["duplicates_kept_on_another_day"],
            m["out_of_window"],
        )
        for day, m in day_metadata(result, "call_sms_events").items()
    }
    assert figures == {
        d1.isoformat(): (got[d1][0], 0, 0, 3),  # the end of d0, kept on d1
        d2.isoformat(): (got[d2][0], 3, 3, 0),  # the end of d1, already kept there
        d3.isoformat(): (got[d3][0], 3, 3, 0),
    }
    # d1 keeps the end of d0 (flagged out of window); d2 and d3 lose nothing and gain nothing.
    assert got[d2] == clean_days[d2] and got[d3] == clean_days[d3]
    assert got[d1][0] == clean_days[d1][0] + 3
    assert faulty.sql(
        "SELECT list(sid ORDER BY sid) FROM call_sms_events WHERE day = ? AND out_of_window", d1
    ) == [(sorted(end_of_d0),)]

    result = faulty.run(d0.isoformat())
    meta = result.asset_materializations_for_node("call_sms_events")[0].metadata
    assert meta["duplicates_kept_on_another_day"].value == 3
    assert [m for m in run_logs(faulty, result) if "already kept on" in m] == [
        f"3 sids of {d0} were already kept on {d1} and are counted there only (the provider "
        "served them for both days)"
    ]
    assert check_evaluation(result, "sids_unique").passed
    assert faulty.sql(
        "SELECT count(*), count(DISTINCT sid), sum(cost_eur) FROM call_sms_events"
    ) == [
        (
            sum(n for n, _ in clean_days.values()) + 3,
            sum(n for n, _ in clean_days.values()) + 3,
            sum(cost for _, cost in clean_days.values())
            + sum(Decimal(str(i["session_cost"])) for i in before_d0),
        )
    ]
    assert faulty.sql(
        "SELECT day, count(*) FROM call_sms_events WHERE list_contains(?, sid) GROUP BY day",
        sorted(end_of_d0),
    ) == [(d1, 3)]


def test_which_copy_of_a_repeated_sid_is_kept(tmp_path):
    """A copy stored for a day outside the run wins; within the run the copy inside its
    day's window, then the earliest day, then the earliest page."""
    d0, d1, d2 = (DAY + dt.timedelta(days=n) for n in (0, 1, 2))
    rows = [  # sid, day, out_of_window, page
        (1, d0, False, 0),  # stored before the run (d1..d2): kept
        (1, d1, False, 0),
        (2, d1, True, 0),  # served for d1 too, but its time falls on d2
        (2, d2, False, 5),  # kept: inside its day's window
        (3, d1, False, 0),  # kept: the earlier day
        (3, d2, False, 0),
        (4, d2, False, 3),
        (4, d2, False, 1),  # kept: the earlier page
    ]
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        ensure_schema(con)
        con.executemany(
            "INSERT INTO call_sms_events (sid, occurred_at, day, type, cost_eur, sim_id, "
            "out_of_window, source_page) VALUES (?, now(), ?, 'call', 1, 1, ?, ?)",
            rows,
        )
        con.execute(REPEATED_COPIES_SQL, {"start": d1, "end": d2})
        con.execute(DELETE_REPEATED_COPIES_SQL)
        kept = con.execute(
            "SELECT sid, day, source_page FROM call_sms_events ORDER BY sid"
        ).fetchall()
        moved = con.execute("SELECT day, kept_day FROM repeated_copies ORDER BY ALL").fetchall()
    assert kept == [(1, d0, 0), (2, d2, 5), (3, d1, 0), (4, d2, 1)]
    assert moved == [(d1, d0), (d1, d2), (d2, d1), (d2, d2)]


def test_a_time_zone_mismatch_keeps_events_and_warns(start_simulator, make_pipeline):
    utc_fleet = FleetSpec(**{**SMALL_FLEET.__dict__, "timezone": "UTC"})
    pipeline = make_pipeline(sim=start_simulator(fleet=utc_fleet))
    result = pipeline.run(DAY_KEY)
    served = served_items(pipeline.sim.api_url, DAY)
    ((events, outside),) = pipeline.sql(
        "SELECT count(*), count(*) FILTER (WHERE out_of_window) FROM call_sms_events"
    )
    assert events == len(served)
    assert 0.1 < outside / events < 0.35
    warning = check_evaluation(result, "out_of_window_share")
    assert not warning.passed and warning.severity.value == "WARN"
    assert "NOVA_TIMEZONE" in warning.description and DAY_KEY in warning.description
    assert result.success


def test_all_six_tables_exist_and_hold_the_day(make_pipeline):
    pipeline = make_pipeline()
    result = pipeline.run(DAY_KEY)
    for table in TABLES:
        days = pipeline.sql(f"SELECT DISTINCT day FROM {table}")
        assert days == ([(DAY,)] if table != "call_sms_rejects" else [])
    assert all(e.passed for e in result.get_asset_check_evaluations())
    assert sorted(e.check_name for e in result.get_asset_check_evaluations()) == [
        "cost_not_negative",
        "cost_per_event_usual",
        "daily_volume_usual",
        "group_cost_reconciles",
        "group_sids_in_account_pull",
        "group_volume_usual",
        "out_of_window_share",
        "rejects_share",
        "sids_unique",
        "sim_cost_reconciles",
        "types_known",
    ]


def test_one_events_check_can_run_alone(make_pipeline):
    pipeline = make_pipeline(faults={"bad_items": 0.5})
    pipeline.run(DAY_KEY)
    only = dg.AssetSelection.checks(
        dg.AssetCheckKey(dg.AssetKey("call_sms_events"), "rejects_share")
    )
    result = pipeline.run(DAY_KEY, selection=only, raise_on_error=False)
    evaluations = result.get_asset_check_evaluations()
    assert [e.check_name for e in evaluations] == ["rejects_share"]
    assert not evaluations[0].passed and DAY_KEY in evaluations[0].description
    assert not result.get_asset_materialization_events()


def test_a_sid_seen_on_another_day_fails_sids_unique(make_pipeline):
    pipeline = make_pipeline()
    pipeline.run(DAY_KEY)
    with pipeline.resources["duckdb"].get_connection() as con:
        con.execute(
            "INSERT INTO call_sms_events SELECT * REPLACE (day - 1 AS day) FROM call_sms_events "
            "WHERE sid = (SELECT min(sid) FROM call_sms_events)"
        )
    only = dg.AssetSelection.checks(dg.AssetCheckKey(dg.AssetKey("call_sms_events"), "sids_unique"))
    (evaluation,) = pipeline.run(
        DAY_KEY, selection=only, raise_on_error=False
    ).get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.severity.value == "ERROR"
    assert evaluation.metadata["failing_days"].value == [DAY_KEY]
    assert "| 1 |" in evaluation.metadata["detail"].value


def test_group_sids_missing_from_the_account_pull_fail_the_group_check(make_pipeline):
    """Group costs come from the account pull's events; a sid a group pull returned that
    the account pull lacks would be missing from them, so the check names day and pull,
    and counts each sid once when the group pull served it twice (a page repeating the
    end of the one before)."""
    pipeline = make_pipeline(faults={"duplicates": 1.0}, page_size=50)
    pipeline.run(DAY_KEY)
    vans = "SELECT sim_id FROM sim_group_membership WHERE group_id = 2"
    [(missing,)] = pipeline.sql(f"SELECT count(*) FROM call_sms_events WHERE sim_id IN ({vans})")
    assert missing > 50, "one page of the group pull: no sid served twice"
    pipeline.sql(f"DELETE FROM call_sms_events WHERE sim_id IN ({vans})")
    only = dg.AssetSelection.checks(
        dg.AssetCheckKey(dg.AssetKey("sim_group_membership"), "group_sids_in_account_pull")
    )
    (evaluation,) = pipeline.run(
        DAY_KEY, selection=only, raise_on_error=False
    ).get_asset_check_evaluations()
    assert not evaluation.passed and evaluation.severity.value == "ERROR"
    assert evaluation.metadata["failing_days"].value == [DAY_KEY]
    assert f"| {DAY_KEY} | g_2 | {missing} |" in evaluation.metadata["detail"].value


def test_group_membership_is_what_each_groups_pull_returned_each_day(
    start_simulator, make_pipeline
):
    """Over two days, with one configured group that has no SIM: the table holds each
    day's SIMs of each group's pull; the run's metadata counts each group's SIMs once over
    the range, and every group configured, the empty one too."""
    sim = start_simulator(fleet=FleetSpec(seed=7, sims=5, groups=12, events_per_sim_day=12))
    dataset = sim.simulator.dataset
    used = sorted({s.group_id for s in dataset.sims if s.group_id is not None})
    empty = next(g for g in range(1, 13) if not dataset.sim_ids_in_group(g))
    groups = {**{g: f"G{g}" for g in used}, empty: "Spare"}
    pipeline = make_pipeline(groups=",".join(f"{g}={n}" for g, n in groups.items()), sim=sim)
    days = [DAY - dt.timedelta(days=1), DAY]
    result = pipeline.run(days[0].isoformat(), DAY_KEY)

    served = {
        (day, g, item["id"])
        for day in days
        for g in groups
        for item in served_items(sim.api_url, day, f"g_{g}")
    }
    rows = pipeline.sql("SELECT day, group_id, sim_id FROM sim_group_membership")
    assert len(rows) == len(set(rows)) and set(rows) == served
    meta = result.asset_materializations_for_node("sim_group_membership")[0].metadata
    assert meta["groups_configured"].value == len(groups) > len(used)
    seen = {g: {s for _, gg, s in served if gg == g} for g in used}
    assert sum(map(len, seen.values())) < len(served), "some SIMs are seen on both days"
    assert table_rows(meta["per_group"].value) == [
        [str(g), groups[g], str(len(seen[g]))] for g in used
    ]


def test_a_data_folder_with_a_quote_in_its_name_loads_every_event(start_simulator, tmp_path):
    """The conforming pages' files reach DuckDB as a list literal in a view's text (a view
    takes no parameter): a quote in NOVA_DATA_DIR must not end the string."""
    pipeline = Pipeline(start_simulator(), tmp_path / "o'brien's data", "1=Trackers,2=Vans")
    result = pipeline.run(DAY_KEY)
    assert result.success
    assert pipeline.sql("SELECT count(*) FROM call_sms_events") == [
        (len(served_items(pipeline.sim.api_url, DAY)),)
    ]
    assert pipeline.sql("SELECT count(DISTINCT group_id) FROM sim_group_membership") == [(2,)]
