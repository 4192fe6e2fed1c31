"""Raw layer: every page of the API, verbatim, for each provider day."""

import dataclasses
import time

import dagster as dg
from dagster_duckdb import DuckDBResource

from nova_pipeline.assets.common import (
    DAILY_WAREHOUSE_STEP,
    add_daily_metadata,
    markdown_table,
    table_metadata,
    warn_of_days_not_in_warehouse,
)
from nova_pipeline.landing import PageRecord
from nova_pipeline.partitions import day_range, days_between
from nova_pipeline.pull import DayPull, pull_days
from nova_pipeline.resources import FleetGroupsResource, LandingZoneResource, NovaApiResource
from nova_pipeline.warehouse import replace_days

PAGE_COLUMNS = [f.name for f in dataclasses.fields(PageRecord)]
INSERT_PAGES_SQL = (
    f"INSERT INTO call_sms_raw_pages ({', '.join(PAGE_COLUMNS)}) "
    f"SELECT {', '.join(f'unnest(${c})' for c in PAGE_COLUMNS)}"
)
"""Page records passed as one list per column (no DataFrame: pandas alone would add about
45 MB to every run's memory)."""


def day_figures(pulled: DayPull) -> dict[str, object]:
    """What one day's pull fetched and landed, for that day's materialization."""
    return {
        "dagster/row_count": pulled.pages,
        "pages": pulled.pages,
        "pages_nonconforming": sum(not r.conforms for r in pulled.records),
        "items_all_pull": pulled.items(),
        "items_group_pulls": pulled.group_items,
        "items_per_pull": dg.MetadataValue.json(pulled.items_per_pull()),
        "body_mb": round(pulled.body_bytes / 1e6, 2),
        "landed_mb": round(pulled.landed_bytes / 1e6, 2),
        "requests": pulled.requests,
        "retries": pulled.retries,
        "rate_limited_429": pulled.retry_reasons["HTTP 429"],
        "retry_reasons": dg.MetadataValue.json(dict(pulled.retry_reasons)),
        "lone_surrogates_replaced": pulled.lone_surrogates_replaced,
    }


@dg.asset(
    name="call_sms_raw_pages",
    group_name="raw",
    kinds={"python", "duckdb", "file"},
    **DAILY_WAREHOUSE_STEP,
    metadata=table_metadata("call_sms_raw_pages"),
    description=(
        "Every page NovaConnect `report/call_sms` returned for the day: the account-wide "
        "`all` pull and one `g_<id>` pull per configured group (NOVA_GROUPS), each down to "
        "the empty page that ends it, which records that the pull was made even when it "
        "found nothing (so a group pulled with no SIM is told from one not pulled). "
        "Bodies are kept verbatim in the landing zone (zstd-compressed NDJSON under "
        "NOVA_DATA_DIR/landing: `landed_mb` on disk for `body_mb` received; a page with "
        "any item that breaks the contract in a `.nonconforming` file of its own; with "
        "NOVA_API_LONE_SURROGATES=replace, a lone UTF-16 surrogate escape, half a "
        "character, as \\ufffd, counted in `lone_surrogates_replaced`); this "
        "table indexes them with the request, attempts and retry reasons of each page, so every "
        "number downstream can be traced to the page it came from. The API is fetched "
        "before the warehouse is opened; a failed pull writes nothing. Each day's "
        "materialization has that day's figures (`items_per_pull`: each pull made, with "
        "its items); `per_day`, `days`, `fetch_seconds` and `empty_days` describe the run "
        "it was part of. `days_not_in_warehouse` counts the other days this Dagster instance "
        "records as materialized that the warehouse holds no page of (a file deleted, "
        "NOVA_DUCKDB_PATH changed): the run warns of them, naming the days to backfill."
    ),
)
def call_sms_raw_pages(
    context: dg.AssetExecutionContext,
    nova_api: NovaApiResource,
    fleet_groups: FleetGroupsResource,
    landing_zone: LandingZoneResource,
    duckdb: DuckDBResource,
) -> dg.MaterializeResult:
    start, end = day_range(context)
    days = days_between(start, end)
    selectors = ["all", *(f"g_{gid}" for gid in fleet_groups.as_map())]
    landing = landing_zone.landing()
    started = time.monotonic()
    pulls = pull_days(
        lambda: nova_api.client(context.log),
        landing,
        days,
        selectors,
        concurrency=nova_api.fetch_concurrency,
        log=context.log,
    )
    fetch_seconds = time.monotonic() - started
    records = [r for p in pulls for r in p.records]
    columns = {c: [getattr(r, c) for r in records] for c in PAGE_COLUMNS}
    try:
        with duckdb.get_connection() as con:
            not_in_warehouse = warn_of_days_not_in_warehouse(context, con, besides=days)
            replace_days(
                con,
                start,
                end,
                {"call_sms_raw_pages": lambda c: c.execute(INSERT_PAGES_SQL, columns)},
            )
    except BaseException:
        for pulled in pulls:
            landing.discard(pulled.fetch_dir)
        raise
    for pulled in pulls:
        landing.prune(pulled.day, keep=pulled.fetch_dir)

    add_daily_metadata(context, {p.day: day_figures(p) for p in pulls})
    empty_days = [p.day.isoformat() for p in pulls if p.items() == 0]
    if empty_days:
        context.log.warning(
            "no items for %s: the provider may not have synced these days yet (an empty "
            "yesterday is pulled again by the call_sms_late_sync sensor)",
            empty_days,
        )
    return dg.MaterializeResult(
        metadata={
            "days": len(pulls),
            "empty_days": dg.MetadataValue.json(empty_days),
            "days_not_in_warehouse": not_in_warehouse,
            "fetch_seconds": round(fetch_seconds, 2),
            "per_day": markdown_table(
                ["day", "pages", "items (all)", "group items", "retries", "seconds"],
                [
                    (
                        p.day,
                        p.pages,
                        p.items(),
                        p.group_items,
                        p.retries,
                        f"{p.seconds:.1f}",
                    )
                    for p in pulls
                ],
            ),
        }
    )
