"""Costs layer: per-SIM and per-group daily cost, summed in DuckDB as exact decimals."""

import datetime as dt

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource

from nova_pipeline.assets.common import (
    DAILY_WAREHOUSE_STEP,
    add_daily_metadata,
    day_totals,
    derived_day_range,
    euro,
    markdown_table,
    register_groups,
    require_pulled_days,
    sql_references,
    table_metadata,
    warn_of_unpulled_groups,
)
from nova_pipeline.resources import FleetGroupsResource
from nova_pipeline.transforms import costs as cost_sql
from nova_pipeline.transforms.costs import (
    GROUP_DAILY_COST_SQL,
    GROUP_TOTALS_SQL,
    SIM_DAILY_COST_SQL,
    TOP_SIMS_SQL,
)
from nova_pipeline.warehouse import COST, replace_days

CHANGED_SIMS_SQL = """
CREATE OR REPLACE TEMP TABLE changed_sims AS
SELECT day, sim_id, p.cost_eur AS previous, n.cost_eur AS now
FROM previous_cost p
FULL JOIN (SELECT day, sim_id, cost_eur FROM sim_daily_cost WHERE day BETWEEN $1 AND $2) n
    USING (day, sim_id)
WHERE p.cost_eur IS DISTINCT FROM n.cost_eur
"""
"""The SIMs whose cost a re-run changed. Only their count per day and the first 50 come
into Python (all of them cost 0.15 s when every SIM of a million-event day changed)."""


class CostBeyondColumn(Exception):
    """A SIM's or group's cost of a day that the rollup's cost column cannot hold."""


def replace_rollup(
    con: duckdb.DuckDBPyConnection,
    table: str,
    rows_sql: str,
    start: dt.date,
    end: dt.date,
    label_sql: str,
    stored_in: str,
) -> None:
    """Replace the days of `table` with `rows_sql`'s rows. Every event's cost is under
    10^12 euro (the contract's check), but a SIM's or group's day can add up past what
    the column holds: DuckDB's error names only the value, so this finds the rows (each
    `label_sql`, with where their parts are stored) and says which they are."""
    params = {"start": start, "end": end}
    try:
        replace_days(
            con, start, end, {table: lambda c: c.execute(f"INSERT INTO {table} {rows_sql}", params)}
        )
    except duckdb.ConversionException as exc:
        over = con.execute(
            f"SELECT day, {label_sql}, cost_eur FROM ({rows_sql}) "
            f"WHERE TRY_CAST(cost_eur AS {COST}) IS NULL ORDER BY day, cost_eur DESC",
            params,
        ).fetchall()
        if not over:
            raise
        shown = "; ".join(
            f"{label} on {day} costs {euro(cost)} €" for day, label, cost in over[:10]
        )
        more = f"; and {len(over) - 10} more" if len(over) > 10 else ""
        raise CostBeyondColumn(
            f"{table} not built: {shown}{more}. Its cost_eur column ({COST}) holds under "
            f"10^12 € a row. Each event is under that, so many add up to it: see {stored_in} "
            "(costs sent in a smaller unit than the euro?). Nothing was written; the previous "
            "rows of the run's days are in place."
        ) from exc


@dg.asset(
    name="sim_daily_cost",
    deps=["call_sms_events"],
    group_name="costs",
    kinds={"duckdb", "sql"},
    **DAILY_WAREHOUSE_STEP,
    metadata={**table_metadata("sim_daily_cost"), **sql_references(cost_sql, "SIM_DAILY_COST_SQL")},
    description=(
        "Cost per SIM card per provider day, in euro: count and cost of calls, incoming "
        "and outgoing SMS and USSD requests, and the total. Sums are exact (DECIMAL). A "
        "re-run after the provider re-rates or adds late records replaces the day; each "
        "day's materialization then gives its previous cost and how many SIMs' cost "
        "changed, and `changes` the first 50 of the run. `top_sims` covers the run."
    ),
)
def sim_daily_cost(
    context: dg.AssetExecutionContext, duckdb: DuckDBResource
) -> dg.MaterializeResult:
    start, end = derived_day_range(context)
    with duckdb.get_connection() as con:
        require_pulled_days(context, con, start, end)
        con.execute(
            "CREATE OR REPLACE TEMP TABLE previous_cost AS SELECT day, sim_id, cost_eur "
            "FROM sim_daily_cost WHERE day BETWEEN ? AND ?",
            [start, end],
        )
        replace_rollup(
            con,
            "sim_daily_cost",
            SIM_DAILY_COST_SQL,
            start,
            end,
            "'SIM ' || sim_id",
            "their events in call_sms_events",
        )
        by_day = day_totals(con, "sim_daily_cost", start, end)
        previous = dict(
            con.execute("SELECT day, sum(cost_eur) FROM previous_cost GROUP BY day").fetchall()
        )
        if previous:
            con.execute(CHANGED_SIMS_SQL, [start, end])
            changed_per_day = dict(
                con.execute("SELECT day, count(*) FROM changed_sims GROUP BY day").fetchall()
            )
            changed = con.execute(
                "SELECT day, sim_id, previous, now FROM changed_sims ORDER BY day, sim_id LIMIT 50"
            ).fetchall()
        top = con.execute(TOP_SIMS_SQL, [start, end]).fetchall()
    metadata = {
        "top_sims": markdown_table(
            ["sim_id", "name", "iccid", "events", "cost €"],
            [(s, n or "", i, e, euro(c)) for s, n, i, e, c in top],
        ),
    }
    if previous:
        for day, figures in by_day.items():
            figures["previous_cost_eur_exact"] = str(previous[day]) if day in previous else "none"
            figures["sims_changed"] = changed_per_day.get(day, 0)
        metadata["changes"] = markdown_table(
            ["day", "sim_id", "previous €", "now €"],
            [
                (d, s, euro(p) if p is not None else "—", euro(n) if n is not None else "—")
                for d, s, p, n in changed
            ],
        )
    add_daily_metadata(context, by_day)
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    name="group_daily_cost",
    deps=["sim_daily_cost", "sim_group_membership", "call_sms_raw_pages"],
    group_name="costs",
    kinds={"duckdb", "sql"},
    **DAILY_WAREHOUSE_STEP,
    metadata={
        **table_metadata("group_daily_cost"),
        **sql_references(cost_sql, "GROUP_DAILY_COST_SQL"),
    },
    description=(
        "Cost per configured SIM group per provider day, in euro, with the same per-type "
        "counts and costs, for the groups pulled that day (as call_sms_raw_pages records "
        "them), plus one 'ungrouped' row (group_id NULL) for SIMs in no such group. With "
        "disjoint groups the rows of a day add up to the account's total for that day; a "
        "SIM in two groups counts in each. An idle group has a row of zeros; a group "
        "configured since the day was pulled has no row until the day is pulled again "
        "(`groups_not_pulled` and a warning name such groups and days). Each day's "
        "materialization has that day's rows and euro; `groups` covers the run."
    ),
)
def group_daily_cost(
    context: dg.AssetExecutionContext, duckdb: DuckDBResource, fleet_groups: FleetGroupsResource
) -> dg.MaterializeResult:
    start, end = derived_day_range(context)
    with duckdb.get_connection() as con:
        require_pulled_days(context, con, start, end)
        register_groups(con, fleet_groups.as_map())
        replace_rollup(
            con,
            "group_daily_cost",
            GROUP_DAILY_COST_SQL,
            start,
            end,
            "coalesce(format('group {} ({})', group_id, group_name), 'ungrouped')",
            "their SIMs in sim_daily_cost",
        )
        add_daily_metadata(context, day_totals(con, "group_daily_cost", start, end))
        per_group = con.execute(GROUP_TOTALS_SQL, [start, end]).fetchall()
        not_pulled = warn_of_unpulled_groups(
            context, con, start, end, "no row there, and its SIMs count as 'ungrouped'"
        )
    return dg.MaterializeResult(
        metadata={
            "groups": markdown_table(
                ["group", "name", "max active SIMs a day", "events", "cost €"],
                [(g if g is not None else "—", n, a, e, euro(c)) for g, n, a, e, c in per_group],
            ),
            **not_pulled,
        }
    )
