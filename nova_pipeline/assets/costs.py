"""Costs layer: per-SIM and per-group daily cost, summed in DuckDB as exact decimals."""

import dagster as dg
from dagster_duckdb import DuckDBResource

from nova_pipeline.assets.common import (
    DAILY_WAREHOUSE_STEP,
    euro,
    markdown_table,
    register_groups,
    sql_references,
    table_metadata,
)
from nova_pipeline.partitions import day_range
from nova_pipeline.resources import FleetGroupsResource
from nova_pipeline.transforms import costs as cost_sql
from nova_pipeline.transforms.costs import (
    GROUP_DAILY_COST_SQL,
    GROUP_TOTALS_SQL,
    SIM_DAILY_COST_SQL,
    TOP_SIMS_SQL,
)
from nova_pipeline.warehouse import replace_days

CHANGED_SIMS_SQL = """
SELECT count(*) OVER (), day, sim_id, p.cost_eur, n.cost_eur
FROM previous_cost p
FULL JOIN (SELECT day, sim_id, cost_eur FROM sim_daily_cost WHERE day BETWEEN $1 AND $2) n
    USING (day, sim_id)
WHERE p.cost_eur IS DISTINCT FROM n.cost_eur
ORDER BY day, sim_id
LIMIT 50
"""
"""The SIMs whose cost a re-run changed: how many, and the first 50 to show (bringing all
of them into Python cost 0.15 s when every SIM of a million-event day changed)."""


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
        "re-run after the provider re-rates or adds late records replaces the day; the "
        "run's metadata says which SIMs' cost changed."
    ),
)
def sim_daily_cost(
    context: dg.AssetExecutionContext, duckdb: DuckDBResource
) -> dg.MaterializeResult:
    start, end = day_range(context)
    with duckdb.get_connection() as con:
        con.execute(
            "CREATE OR REPLACE TEMP TABLE previous_cost AS SELECT day, sim_id, cost_eur "
            "FROM sim_daily_cost WHERE day BETWEEN ? AND ?",
            [start, end],
        )
        counts = replace_days(
            con,
            start,
            end,
            {
                "sim_daily_cost": lambda c: c.execute(
                    SIM_DAILY_COST_SQL, {"start": start, "end": end}
                ),
            },
        )
        total, previous_total, had_previous = con.execute(
            "SELECT (SELECT sum(cost_eur) FROM sim_daily_cost WHERE day BETWEEN $s AND $e), "
            "(SELECT sum(cost_eur) FROM previous_cost), (SELECT count(*) > 0 FROM previous_cost)",
            {"s": start, "e": end},
        ).fetchone()
        changed = con.execute(CHANGED_SIMS_SQL, [start, end]).fetchall() if had_previous else []
        top = con.execute(TOP_SIMS_SQL, [start, end]).fetchall()
    metadata = {
        "dagster/row_count": counts["sim_daily_cost"],
        "cost_eur": float(total or 0),
        "cost_eur_exact": str(total or 0),
        "top_sims": markdown_table(
            ["sim_id", "name", "iccid", "events", "cost €"],
            [(s, n or "", i, e, euro(c)) for s, n, i, e, c in top],
        ),
    }
    if had_previous:
        metadata |= {
            "previous_cost_eur_exact": str(previous_total or 0),
            "sims_changed": changed[0][0] if changed else 0,
            "changes": markdown_table(
                ["day", "sim_id", "previous €", "now €"],
                [
                    (d, s, euro(p) if p is not None else "—", euro(n) if n is not None else "—")
                    for _, d, s, p, n in changed
                ],
            ),
        }
    return dg.MaterializeResult(metadata=metadata)


@dg.asset(
    name="group_daily_cost",
    deps=["sim_daily_cost", "sim_group_membership"],
    group_name="costs",
    kinds={"duckdb", "sql"},
    **DAILY_WAREHOUSE_STEP,
    metadata={
        **table_metadata("group_daily_cost"),
        **sql_references(cost_sql, "GROUP_DAILY_COST_SQL"),
    },
    description=(
        "Cost per configured SIM group per provider day, in euro, with the same per-type "
        "counts and costs, plus one 'ungrouped' row (group_id NULL) for SIMs in no "
        "configured group. With disjoint groups the rows of a day add up to the account's "
        "total for that day; an idle group has a row of zeros."
    ),
)
def group_daily_cost(
    context: dg.AssetExecutionContext, duckdb: DuckDBResource, fleet_groups: FleetGroupsResource
) -> dg.MaterializeResult:
    start, end = day_range(context)
    with duckdb.get_connection() as con:
        register_groups(con, fleet_groups.as_map())
        counts = replace_days(
            con,
            start,
            end,
            {
                "group_daily_cost": lambda c: c.execute(
                    GROUP_DAILY_COST_SQL, {"start": start, "end": end}
                ),
            },
        )
        per_group = con.execute(GROUP_TOTALS_SQL, [start, end]).fetchall()
    total = sum((row[4] for row in per_group), start=0)
    return dg.MaterializeResult(
        metadata={
            "dagster/row_count": counts["group_daily_cost"],
            "cost_eur": float(total),
            "cost_eur_exact": str(total),
            "groups": markdown_table(
                ["group", "name", "max active SIMs a day", "events", "cost €"],
                [(g if g is not None else "—", n, a, e, euro(c)) for g, n, a, e, c in per_group],
            ),
        }
    )
