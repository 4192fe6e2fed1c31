"""What every warehouse asset shares: the pool, the partitioning, small SQL helpers."""

import ast
import datetime as dt
import functools
import inspect
from collections.abc import Iterable, Mapping, Sequence
from decimal import Decimal
from pathlib import Path
from types import ModuleType

import dagster as dg
import duckdb

from nova_pipeline.landing import Landing
from nova_pipeline.partitions import BACKFILL, DAILY, consecutive_ranges, day_range, days_between
from nova_pipeline.settings import current_settings
from nova_pipeline.transforms.events import UNPULLED_GROUPS_SQL
from nova_pipeline.warehouse import GRAIN, TABLES, qualified_name

DUCKDB_POOL = "duckdb"
"""DuckDB allows one writing process: every step that opens the file is in this pool,
whose limit is 1 (dagster.yaml), so concurrent runs queue instead of failing on the lock."""

RAW_PAGES = dg.AssetKey("call_sms_raw_pages")

DAILY_WAREHOUSE_STEP = {"partitions_def": DAILY, "backfill_policy": BACKFILL, "pool": DUCKDB_POOL}
"""What every asset shares: the provider day, batched backfills, the DuckDB pool."""


def table_metadata(table: str) -> dict:
    """Table name (as a DuckDB session on NOVA_DUCKDB_PATH reaches it), what one row is and
    the column schema, for the UI, from warehouse/schema.py (which gives the file the same
    words as comments)."""
    columns = [
        dg.TableColumn(
            c.name,
            c.type,
            description=c.description,
            constraints=dg.TableColumnConstraints(nullable=c.nullable),
        )
        for c in TABLES[table]
    ]
    return {
        "dagster/table_name": qualified_name(table, current_settings().duckdb_path),
        "grain": GRAIN[table],
        "dagster/column_schema": dg.TableSchema(columns=columns),
    }


@functools.cache
def _assignment_lines(path: str) -> dict[str, int]:
    """The line of each top-level `NAME = ...` of a source file, read once per file."""
    tree = ast.parse(Path(path).read_text(encoding="utf-8"))
    return {
        target.id: node.lineno
        for node in tree.body
        if isinstance(node, ast.Assign)
        for target in node.targets
        if isinstance(target, ast.Name)
    }


def sql_references(module: ModuleType, *names: str) -> dict:
    """Links in the UI from an asset to the SQL that computes its numbers (the module
    constants `names`), beside the link to the asset's own function that
    `dg.with_source_code_references` adds."""
    path = inspect.getfile(module)
    lines = _assignment_lines(path)
    references = []
    for name in names:
        if name not in lines:
            raise ValueError(f"{name} is not assigned at the top level of {path}")
        references.append(
            dg.LocalFileCodeReference(file_path=path, line_number=lines[name], label=name)
        )
    return {"dagster/code_references": dg.CodeReferencesMetadataValue(code_references=references)}


def register_groups(con: duckdb.DuckDBPyConnection, groups: Mapping[int, str]) -> None:
    """A temp table `group_names(group_id, group_name)` for the SQL transforms."""
    con.execute("CREATE OR REPLACE TEMP TABLE group_names (group_id BIGINT, group_name VARCHAR)")
    if groups:
        con.executemany("INSERT INTO group_names VALUES (?, ?)", list(groups.items()))


def landing_files(
    con: duckdb.DuckDBPyConnection, landing: Landing, start: dt.date, end: dt.date, selectors: str
) -> tuple[list[str], list[str]]:
    """The landing files the committed raw pages of these days point to, where the landing
    zone now is, each checked to be there: (conforming, nonconforming). Pages indexed
    before `conforms` was recorded count as nonconforming."""
    rows = con.execute(
        "SELECT DISTINCT day, landing_file, conforms IS TRUE FROM call_sms_raw_pages "
        "WHERE day BETWEEN ? AND ? AND selector LIKE ? ESCAPE '\\'",
        [start, end, selectors],
    ).fetchall()
    conforming = landing.existing((day, name) for day, name, ok in rows if ok)
    nonconforming = landing.existing((day, name) for day, name, ok in rows if not ok)
    return [str(p) for p in conforming], [str(p) for p in nonconforming]


def add_daily_metadata(
    context: dg.AssetExecutionContext,
    by_day: Mapping[dt.date, Mapping[str, object]],
    asset_key: str | None = None,
) -> None:
    """Each day's own figures on that day's materialization. A run of several days (the
    daily run's four, a backfill's batch) records one materialization per day, and each
    would otherwise carry the run's totals: the UI's partition view and metadata plots
    would show a run's figures once per day of it."""
    for day, figures in by_day.items():
        context.add_asset_metadata(figures, asset_key=asset_key, partition_key=day.isoformat())


def day_totals(
    con: duckdb.DuckDBPyConnection, table: str, start: dt.date, end: dt.date
) -> dict[dt.date, dict[str, object]]:
    """Each day's rows of a table (and euro, for a table with `cost_eur`) over `start..end`,
    for that day's materialization; a day with no row gets zeros."""
    has_cost = any(c.name == "cost_eur" for c in TABLES[table])
    found = {
        day: figures
        for day, *figures in con.execute(
            f"SELECT day, count(*){', sum(cost_eur)' if has_cost else ''} FROM {table} "
            "WHERE day BETWEEN ? AND ? GROUP BY day",
            [start, end],
        ).fetchall()
    }
    totals: dict[dt.date, dict[str, object]] = {}
    for day in days_between(start, end):
        rows, *cost = found.get(day, (0, Decimal(0)))
        totals[day] = {"dagster/row_count": rows}
        if has_cost:
            totals[day] |= {"cost_eur": float(cost[0]), "cost_eur_exact": str(cost[0])}
    return totals


class UpstreamNotMaterialized(Exception):
    """An asset run for days that what it is built from was never materialized for."""


class WarehouseLacksDays(Exception):
    """An asset run for days the instance records as pulled that the warehouse has no
    pull of: the file was replaced, or the settings point at another one."""


def _built(context: dg.AssetExecutionContext) -> str:
    return ", ".join(
        spec.key.to_user_string()
        for spec in context.assets_def.specs
        if spec.key in context.selected_asset_keys
    )


def derived_day_range(context: dg.AssetExecutionContext) -> tuple[dt.date, dt.date]:
    """The run's first and last day, once each asset this one is built from has been
    materialized for every one of them. Else the step fails before it opens the warehouse:
    picked alone in the UI for days its upstream never had, it would store them empty,
    shown as materialized, with checks that pass (a rollup of nothing reconciles)."""
    start, end = day_range(context)
    days = {day.isoformat() for day in days_between(start, end)}
    upstream = set(context.assets_def.dependency_keys) - set(context.assets_def.keys)
    missing = {
        key.to_user_string(): gap
        for key in sorted(upstream, key=lambda key: key.to_user_string())
        if (gap := sorted(days - context.instance.get_materialized_partitions(key)))
    }
    if missing:
        of_the_run = f" of the run's {len(days)} days" if len(days) > 1 else ""
        raise UpstreamNotMaterialized(
            f"{_built(context)} not built: "
            + "; ".join(
                f"{name} has never been materialized for {first_ten(gap)}"
                + (f" ({len(gap)}{of_the_run})" if of_the_run else "")
                for name, gap in missing.items()
            )
            + ". Such a day would be stored empty, as if the fleet had been idle. Materialize "
            "those days with every asset selected, or with the assets named here too. Nothing "
            "was written."
        )
    return start, end


def _days_without_pull(con: duckdb.DuckDBPyConnection, days: Sequence[dt.date]) -> list[dt.date]:
    """Those of `days` the warehouse holds no `all` pull of, in order: every pull leaves at
    least its closing empty page in `call_sms_raw_pages`."""
    return [
        day
        for (day,) in con.execute(
            "SELECT day FROM unnest($days) AS d(day) "
            "EXCEPT SELECT day FROM call_sms_raw_pages WHERE selector = 'all' "
            "AND day BETWEEN list_min($days) AND list_max($days) ORDER BY day",
            {"days": list(days)},
        ).fetchall()
    ]


def _warehouse_file(con: duckdb.DuckDBPyConnection) -> str:
    [(path,)] = con.execute(
        "SELECT path FROM duckdb_databases() WHERE database_name = current_database()"
    ).fetchall()
    return path


CHANGED_FILE = (
    "the file was replaced or deleted, or NOVA_DUCKDB_PATH (NOVA_DATA_DIR) now points at "
    "another one"
)


def require_pulled_days(
    context: dg.AssetExecutionContext, con: duckdb.DuckDBPyConnection, start: dt.date, end: dt.date
) -> None:
    """Fail, before anything is written, when the warehouse has no `all` pull of a day the
    instance records as pulled. `derived_day_range` asks the instance; with the warehouse
    file deleted, or NOVA_DUCKDB_PATH pointed at another one, the instance still says every
    day is in, and an asset picked alone would store its days empty, as if the fleet had
    been idle."""
    unpulled = [day.isoformat() for day in _days_without_pull(con, days_between(start, end))]
    if unpulled:
        raise WarehouseLacksDays(
            f"{_built(context)} not built: this Dagster instance has call_sms_raw_pages "
            f"materialized for {first_ten(unpulled)}, but the warehouse {_warehouse_file(con)} "
            f"holds no page of {'it' if len(unpulled) == 1 else 'them'}: {CHANGED_FILE}. "
            "Point it back, or materialize those days with every asset selected to pull them "
            "again. Nothing was written."
        )


def days_not_in_warehouse(
    con: duckdb.DuckDBPyConnection | None,
    recorded: Iterable[str],
    besides: Sequence[dt.date] = (),
) -> list[dt.date]:
    """The days, other than `besides`, that the instance records the raw pages as
    materialized for (`recorded`, its partition keys) and the warehouse (`con`; None when
    there is no file) holds no pull of, in order. The UI's partitions, the freshness
    checks and the schedule's catch-up of missed days read the instance: after the file
    was deleted or the setting changed they would show those days as in without a word."""
    days = sorted({dt.date.fromisoformat(key) for key in recorded} - set(besides))
    if con is None or not days:
        return days
    return _days_without_pull(con, days)


def not_in_warehouse(missing: Sequence[dt.date], warehouse: str, besides: str = "") -> str:
    """What days the instance records and the warehouse lacks mean, and what to do; said by
    every pull and under `make serve`'s and `make ui`'s banner."""
    spans = [f"{a}..{b}" if a != b else str(a) for a, b in consecutive_ranges(missing)]
    count = f"{len(missing)} day" if len(missing) == 1 else f"{len(missing)} days"
    return (
        f"this Dagster instance has call_sms_raw_pages materialized for {count}{besides} that "
        f"the warehouse {warehouse} holds no page of: {first_ten(spans)}. The UI shows them as "
        "materialized and the daily schedule's catch-up of missed days skips them: "
        f"{CHANGED_FILE}. Point it back, or backfill those days with every asset selected."
    )


def warn_of_days_not_in_warehouse(
    context: dg.AssetExecutionContext, con: duckdb.DuckDBPyConnection, besides: Sequence[dt.date]
) -> int:
    """Warn of the days, other than the run's own (`besides`), that the instance records
    and the warehouse lacks; their count. The daily run is where it is seen."""
    recorded = context.instance.get_materialized_partitions(RAW_PAGES)
    missing = days_not_in_warehouse(con, recorded, besides)
    if missing:
        context.log.warning(not_in_warehouse(missing, _warehouse_file(con), " besides this run's"))
    return len(missing)


def euro(value: Decimal | None) -> str:
    """Euro to the cent for display; the stored value keeps its 6 decimals."""
    return f"{(value or Decimal(0)).quantize(Decimal('0.01')):,.2f}"


def first_ten(names: Sequence[str]) -> str:
    """Names for a one-line message: a year of days would not fit in a log line or a
    check's description."""
    more = f" and {len(names) - 10} more" if len(names) > 10 else ""
    return ", ".join(names[:10]) + more


def warn_of_unpulled_groups(
    context: dg.AssetExecutionContext,
    con: duckdb.DuckDBPyConnection,
    start: dt.date,
    end: dt.date,
    consequence: str,
) -> dict[str, object]:
    """Warn of each configured group that some days of the run hold no pull of (they were
    pulled before it was configured), with what that means here and the remedy; the
    `groups_not_pulled` metadata that names them, if any. Re-running a derived asset alone
    after NOVA_GROUPS changed would otherwise leave the group out without a word."""
    unpulled = con.execute(UNPULLED_GROUPS_SQL, {"start": start, "end": end}).fetchall()
    for group_id, name, days in unpulled:
        context.log.warning(
            "group %s (%s) has no pull on %s (pulled before it was configured): %s. "
            "Materialize every asset for these days to pull it.",
            group_id,
            name,
            first_ten([d.isoformat() for d in days]),
            consequence,
        )
    if not unpulled:
        return {}
    by_group = {str(g): [d.isoformat() for d in days] for g, _, days in unpulled}
    return {"groups_not_pulled": dg.MetadataValue.json(by_group)}


def markdown_table(headers: Sequence[str], rows: Sequence[Sequence[object]]) -> dg.MetadataValue:
    lines = ["| " + " | ".join(headers) + " |", "|" + "---|" * len(headers)]
    lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
    return dg.MetadataValue.md("\n".join(lines))
