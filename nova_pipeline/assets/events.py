"""Events layer: typed events, quarantined items and group membership, from the raw pages."""

import datetime as dt
from collections import Counter
from collections.abc import Iterator

import dagster as dg
from dagster_duckdb import DuckDBResource
from duckdb import DuckDBPyConnection

from nova_pipeline.assets.common import (
    DAILY_WAREHOUSE_STEP,
    RAW_PAGES,
    add_daily_metadata,
    day_totals,
    derived_day_range,
    euro,
    landing_files,
    markdown_table,
    register_groups,
    require_pulled_days,
    sql_references,
    table_metadata,
    warn_of_unpulled_groups,
)
from nova_pipeline.partitions import DAILY, days_between
from nova_pipeline.resources import FleetGroupsResource, LandingZoneResource
from nova_pipeline.transforms import events as event_sql
from nova_pipeline.transforms.events import (
    DELETE_REPEATED_COPIES_SQL,
    INSERT_EVENTS_SQL,
    INSERT_REJECTS_SQL,
    MEMBERSHIP_SQL,
    REPEATED_COPIES_SQL,
    SUMMARY_SQL,
    run_staged,
    stage_group_items,
    stage_items,
)
from nova_pipeline.warehouse import replace_days


@dg.multi_asset(
    specs=[
        dg.AssetSpec(
            "call_sms_events",
            deps=[RAW_PAGES],
            group_name="events",
            kinds={"duckdb", "sql"},
            metadata={
                **table_metadata("call_sms_events"),
                **sql_references(
                    event_sql,
                    "CONFORMING_SQL",
                    "REASON",
                    "INSERT_EVENTS_SQL",
                    "REPEATED_COPIES_SQL",
                ),
            },
            description=(
                "One row per call, SMS or USSD request (per `sid`) of the account-wide pull, "
                "typed: UTC timestamp, provider day, euro cost as an exact DECIMAL to the "
                "micro-euro (never a float; a cost sent with more decimals is rounded half away "
                "from zero). "
                "A sid served twice, on two pages or on two days, is kept once and counted "
                "(a copy already stored for another day wins). Items whose "
                "timestamp falls outside the requested day in NOVA_TIMEZONE are kept and "
                "flagged `out_of_window`. Each day's materialization has that day's figures; "
                "`per_day` gives every day of the run."
            ),
        ),
        dg.AssetSpec(
            "call_sms_rejects",
            deps=[RAW_PAGES],
            group_name="events",
            kinds={"duckdb", "sql"},
            metadata={
                **table_metadata("call_sms_rejects"),
                **sql_references(event_sql, "REASON", "INSERT_REJECTS_SQL"),
            },
            description=(
                "Quarantine: every item (of any pull) that breaks the API contract — a "
                "missing or null field, a wrong type (a cost of NaN too), an unknown `type`, a "
                "negative cost, a number too large to store, a time outside the years 1-9999, a "
                "key sent twice (on a group pull's page, only when that page is flagged "
                "nonconforming), an item that is not an object — as parsed (its "
                "bytes stay verbatim in the landing zone), with every rule it broke and the "
                "day, pull and page it came from. Each day's materialization has that "
                "day's count; `per_day` gives every day of the run with the items judged."
            ),
        ),
    ],
    **DAILY_WAREHOUSE_STEP,
)
def call_sms_events(
    context: dg.AssetExecutionContext, duckdb: DuckDBResource, landing_zone: LandingZoneResource
) -> Iterator[dg.MaterializeResult]:
    start, end = derived_day_range(context)
    landing = landing_zone.landing()
    days = {"start": start, "end": end}

    def insert_events(c: DuckDBPyConnection) -> None:
        c.execute(INSERT_EVENTS_SQL, {"timezone": DAILY.timezone})
        c.execute(REPEATED_COPIES_SQL, days)
        c.execute(DELETE_REPEATED_COPIES_SQL)

    with duckdb.get_connection() as con:
        require_pulled_days(context, con, start, end)
        # Events come from the `all` pull; rejects from any pull's nonconforming pages.
        conforming, _ = landing_files(con, landing, start, end, "all")
        _, nonconforming = landing_files(con, landing, start, end, "%")
        previous = dict(
            con.execute(
                "SELECT day, sum(cost_eur) FROM call_sms_events WHERE day BETWEEN ? AND ? "
                "GROUP BY day",
                [start, end],
            ).fetchall()
        )
        writes = {
            "call_sms_events": insert_events,
            "call_sms_rejects": lambda c: c.execute(INSERT_REJECTS_SQL),
        }
        run_staged(
            con,
            stage_items,
            conforming,
            nonconforming,
            lambda: replace_days(con, start, end, writes),
            context.log.warning,
        )
        summary = con.execute(SUMMARY_SQL, days).fetchall()
        kept_elsewhere = con.execute(
            "SELECT day, kept_day, count(*) FROM repeated_copies WHERE kept_day <> day "
            "GROUP BY ALL ORDER BY ALL"
        ).fetchall()
    for day, kept_day, count in kept_elsewhere:
        context.log.warning(
            "%d sids of %s were already kept on %s and are counted there only (the provider "
            "served them for both days)",
            count,
            day,
            kept_day,
        )
    # A day pulled empty before the closing empty page was kept has no raw page: zeros.
    by_day = {row[0]: row for row in summary}
    summary = [by_day.get(d, (d, 0, None, 0, 0, 0, 0, 0)) for d in days_between(start, end)]
    kept: Counter[dt.date] = Counter()
    for day, _, count in kept_elsewhere:
        kept[day] += count
    add_daily_metadata(
        context,
        {
            day: {
                "dagster/row_count": events,
                "cost_eur": float(cost or 0),
                "cost_eur_exact": str(cost or 0),
                "previous_cost_eur_exact": str(previous[day]) if day in previous else "none",
                "duplicates_collapsed": duplicates,
                "duplicates_kept_on_another_day": kept[day],
                "out_of_window": out_of_window,
                "items_with_extra_fields": extra,
            }
            for day, events, cost, out_of_window, _, duplicates, extra, _ in summary
        },
        asset_key="call_sms_events",
    )
    add_daily_metadata(
        context, {row[0]: {"dagster/row_count": row[4]} for row in summary}, "call_sms_rejects"
    )
    rows = [
        (
            day,
            events,
            euro(cost),
            euro(previous[day]) if day in previous else "—",
            rejects,
            duplicates,
            out_of_window,
            extra,
        )
        for day, events, cost, out_of_window, rejects, duplicates, extra, _ in summary
    ]
    yield dg.MaterializeResult(
        asset_key="call_sms_events",
        metadata={
            "per_day": markdown_table(
                [
                    "day",
                    "events",
                    "cost €",
                    "previous cost €",
                    "rejects",
                    "duplicates",
                    "out of window",
                    "items with extra fields",
                ],
                rows,
            ),
        },
    )
    yield dg.MaterializeResult(
        asset_key="call_sms_rejects",
        metadata={
            "per_day": markdown_table(
                ["day", "rejects", "items (all pulls)"],
                [(row[0], row[4], row[7]) for row in summary],
            ),
        },
    )


@dg.asset(
    name="sim_group_membership",
    deps=[RAW_PAGES],
    group_name="events",
    kinds={"duckdb", "sql"},
    **DAILY_WAREHOUSE_STEP,
    metadata={
        **table_metadata("sim_group_membership"),
        **sql_references(event_sql, "MEMBERSHIP_SQL"),
    },
    description=(
        "Which SIMs belong to which configured group (NOVA_GROUPS) on each day, as the "
        "API's own `g_<id>` pull of that day returned them. A SIM with no activity in a "
        "day does not appear that day, nor does a group configured since the day was "
        "pulled, until the day is pulled again (`groups_not_pulled` and a warning name such "
        "groups and days). Each day's materialization has that day's row count; "
        "`per_group` covers the run."
    ),
)
def sim_group_membership(
    context: dg.AssetExecutionContext,
    duckdb: DuckDBResource,
    fleet_groups: FleetGroupsResource,
    landing_zone: LandingZoneResource,
) -> dg.MaterializeResult:
    start, end = derived_day_range(context)
    groups = fleet_groups.as_map()
    with duckdb.get_connection() as con:
        require_pulled_days(context, con, start, end)
        register_groups(con, groups)
        run_staged(
            con,
            stage_group_items,
            *landing_files(con, landing_zone.landing(), start, end, "g\\_%"),
            lambda: replace_days(
                con, start, end, {"sim_group_membership": lambda c: c.execute(MEMBERSHIP_SQL)}
            ),
            context.log.warning,
        )
        add_daily_metadata(context, day_totals(con, "sim_group_membership", start, end))
        per_group = con.execute(
            "SELECT group_id, any_value(group_name), count(DISTINCT sim_id) "
            "FROM sim_group_membership WHERE day BETWEEN ? AND ? GROUP BY 1 ORDER BY 1",
            [start, end],
        ).fetchall()
        not_pulled = warn_of_unpulled_groups(
            context, con, start, end, "none of its SIMs is listed there"
        )
    return dg.MaterializeResult(
        metadata={
            "groups_configured": len(groups),
            "per_group": markdown_table(["group", "name", "SIMs seen"], per_group),
            **not_pulled,
        }
    )
