"""The DuckDB tables, in one place: their DDL, what one row of each is, and the column
descriptions, which Dagster shows and the file carries as comments for a DuckDB session.

Every table has the partition `day`; money is DECIMAL(18,6). No primary keys: a day is
written by replacing it whole in one transaction, and sid uniqueness is an asset check
(a key makes replacing a day about 4x slower, measured on this machine).
"""

from __future__ import annotations

import functools
import re
from pathlib import Path
from typing import NamedTuple

import duckdb

from nova_pipeline.api.models import EVENT_TYPES

COST = "DECIMAL(18, 6)"


class Column(NamedTuple):
    name: str
    type: str
    description: str
    nullable: bool = False


DAY = Column("day", "DATE", "Provider day (the partition), in NOVA_TIMEZONE")


def _per_type() -> list[Column]:
    columns = []
    for t in EVENT_TYPES:
        columns.append(Column(f"{t}_count", "BIGINT", f"Number of {t} events"))
        columns.append(Column(f"{t}_cost_eur", COST, f"Cost of the {t} events, euro"))
    return columns


TABLES: dict[str, list[Column]] = {
    "call_sms_raw_pages": [
        DAY,
        Column("selector", "VARCHAR", "`all`, or `g_<id>` for a group pull"),
        Column("page", "INTEGER", "Page number, from 0"),
        Column("status", "SMALLINT", "HTTP status of the accepted response"),
        Column("attempts", "SMALLINT", "HTTP attempts it took (1 = no retry)"),
        Column("retry_reasons", "VARCHAR", "Why earlier attempts failed", nullable=True),
        Column("item_count", "INTEGER", "Items in the page"),
        Column(
            "body_bytes",
            "BIGINT",
            "Size of the body as landed (verbatim: see nova_pipeline/landing.py)",
        ),
        Column("fetched_at", "TIMESTAMPTZ", "When the accepted attempt started (UTC)"),
        Column("request", "VARCHAR", "URL and JSON body of the request (no secrets)"),
        Column(
            "landing_file",
            "VARCHAR",
            "zstd NDJSON file holding the body verbatim, within NOVA_DATA_DIR/landing",
        ),
        Column("line", "INTEGER", "Line of that file, from 0"),
        Column(
            "conforms",
            "BOOLEAN",
            "The client's check passed every item on arrival (else the page is in a "
            "`.nonconforming` file and its items were judged rule by rule). A key sent "
            "twice passes that check; DuckDB's read of the page catches it",
            nullable=True,
        ),
    ],
    "call_sms_events": [
        Column("sid", "BIGINT", "Provider's id of the action"),
        Column("occurred_at", "TIMESTAMPTZ", "When it happened (UTC)"),
        DAY,
        Column("type", "VARCHAR", "call, in_sms, out_sms or ussd"),
        Column("to_number", "VARCHAR", "Destination number, as sent", nullable=True),
        Column(
            "cost_eur",
            COST,
            "Cost in euro, exact to the micro-euro (more decimals: rounded half away from zero)",
        ),
        Column("sim_id", "BIGINT", "Provider's id of the SIM card"),
        Column("sim_number", "VARCHAR", "The SIM's own number", nullable=True),
        Column("iccid", "VARCHAR", "The SIM's ICCID", nullable=True),
        Column("sim_name", "VARCHAR", "The SIM's name", nullable=True),
        Column("out_of_window", "BOOLEAN", "Timestamp falls outside `day` in NOVA_TIMEZONE"),
        Column("source_page", "INTEGER", "Page of the `all` pull it came from"),
    ],
    "call_sms_rejects": [
        DAY,
        Column("selector", "VARCHAR", "Pull it came from"),
        Column("page", "INTEGER", "Page it came from"),
        Column("reason", "VARCHAR", "Every contract rule the item broke"),
        Column(
            "item",
            "JSON",
            "The item as parsed (spacing dropped, a number with a fraction or an exponent "
            "written as the nearest double); its bytes are verbatim in the landing zone",
        ),
    ],
    "sim_group_membership": [
        DAY,
        Column("group_id", "BIGINT", "Configured group id (NOVA_GROUPS)"),
        Column("group_name", "VARCHAR", "Configured group name"),
        Column("sim_id", "BIGINT", "A SIM the group's pull returned that day"),
    ],
    "sim_daily_cost": [
        DAY,
        Column("sim_id", "BIGINT", "Provider's id of the SIM card"),
        Column("sim_number", "VARCHAR", "Latest number seen that day", nullable=True),
        Column("iccid", "VARCHAR", "Latest ICCID seen that day", nullable=True),
        Column("sim_name", "VARCHAR", "Latest name seen that day", nullable=True),
        *_per_type(),
        Column("events", "BIGINT", "All events of the SIM that day"),
        Column("cost_eur", COST, "Total cost, euro"),
    ],
    "group_daily_cost": [
        DAY,
        Column("group_id", "BIGINT", "Configured group id; NULL for ungrouped", nullable=True),
        Column("group_name", "VARCHAR", "Group name, or 'ungrouped'"),
        Column("active_sims", "BIGINT", "SIMs with at least one event"),
        *_per_type(),
        Column("events", "BIGINT", "All events of the group that day"),
        Column("cost_eur", COST, "Total cost, euro"),
    ],
}

GRAIN: dict[str, str] = {
    "call_sms_raw_pages": (
        "One row per page the API returned for a day and pull (`all`, `g_<id>`), the "
        "empty page that ends each pull included; its body is in the landing zone "
        "(landing_file, line)"
    ),
    "call_sms_events": (
        "One row per provider action (sid) of the `all` pull, on the day whose copy was kept"
    ),
    "call_sms_rejects": (
        "One row per item of any pull that broke the API contract: the item and every rule it broke"
    ),
    "sim_group_membership": "One row per day, configured group and SIM the group's pull returned",
    "sim_daily_cost": "One row per day and SIM with at least one event; euro summed exactly",
    "group_daily_cost": (
        "One row per day with events and configured group pulled that day (zeros when "
        "the group is idle), plus one 'ungrouped' row a day for the SIMs of no such group"
    ),
}
"""What one row of each table is: the table's comment in DuckDB."""


@functools.cache
def _reserved_words() -> frozenset[str]:
    with duckdb.connect() as con:
        rows = con.execute(
            "SELECT keyword_name FROM duckdb_keywords() WHERE keyword_category = 'reserved'"
        ).fetchall()
    return frozenset(word for (word,) in rows)


def qualified_name(table: str, warehouse: Path) -> str:
    """The name that reaches `table` from a DuckDB session on the warehouse file: DuckDB
    names a file's catalog after its name up to the first dot (quoted when it is not a
    plain identifier, or is a reserved word such as `order`)."""
    catalog = warehouse.name.split(".")[0]
    plain = re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", catalog)
    if not plain or catalog.lower() in _reserved_words():
        catalog = '"' + catalog.replace('"', '""') + '"'
    return f"{catalog}.main.{table}"


def _type_names(con: duckdb.DuckDBPyConnection) -> dict[str, str]:
    """How DuckDB's catalog names each type as declared here (`DECIMAL(18, 6)` as
    `DECIMAL(18,6)`, `TIMESTAMPTZ` as `TIMESTAMP WITH TIME ZONE`): one query on `con`
    (a connection of its own for each type cost 0.12 s a process)."""
    declared = sorted({c.type for columns in TABLES.values() for c in columns})
    named = con.execute("SELECT " + ", ".join(f"typeof(NULL::{t})" for t in declared)).fetchone()
    return dict(zip(declared, named, strict=True))


def ddl(table: str) -> str:
    columns = ", ".join(
        f"{c.name} {c.type}{'' if c.nullable else ' NOT NULL'}" for c in TABLES[table]
    )
    return f"CREATE TABLE IF NOT EXISTS {table} ({columns})"


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def ensure_schema(con: duckdb.DuckDBPyConnection) -> None:
    """Create the tables that do not exist yet, add the columns a table made by an earlier
    version lacks (nullable there), give a column the type it has now where an earlier
    version made it narrower (group ids were INTEGER), and set the comments that differ
    from GRAIN and the column descriptions, so an analyst's session reads them beside the
    data (idempotent; cheap: three catalog queries, no write once the file is up to date)."""
    for table in TABLES:
        con.execute(ddl(table))
    where = "WHERE database_name = current_database() AND schema_name = 'main'"
    stored = {
        (table, column): (data_type, comment)
        for table, column, data_type, comment in con.execute(
            f"SELECT table_name, column_name, data_type, comment FROM duckdb_columns() {where}"
        ).fetchall()
    }
    type_names = _type_names(con)
    for table, columns in TABLES.items():
        for c in columns:
            data_type, comment = stored.get((table, c.name), (None, None))
            if data_type is None:
                con.execute(f"ALTER TABLE {table} ADD COLUMN {c.name} {c.type}")
            elif data_type != type_names[c.type]:
                con.execute(f"ALTER TABLE {table} ALTER COLUMN {c.name} SET DATA TYPE {c.type}")
            if comment != c.description:
                con.execute(f"COMMENT ON COLUMN {table}.{c.name} IS {_literal(c.description)}")
    tables = dict(
        con.execute(f"SELECT table_name, comment FROM duckdb_tables() {where}").fetchall()
    )
    for table, grain in GRAIN.items():
        if tables.get(table) != grain:
            con.execute(f"COMMENT ON TABLE {table} IS {_literal(grain)}")
