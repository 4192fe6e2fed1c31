"""Raw pages -> typed events and quarantined items, as DuckDB SQL over the landing files.

DuckDB parses the verbatim bodies in bulk (no page ever becomes Python objects). Each item
is checked against the contract; an item failing any rule goes to `call_sms_rejects` with
every rule it broke, the rest become one typed row per (day, sid). `session_cost` is cast
from its JSON text straight to DECIMAL, so money never passes through a float.
"""

from __future__ import annotations

import duckdb

from nova_pipeline.warehouse import COST, EVENT_TYPES

CONTRACT_FIELDS = (
    "sid",
    "date",
    "type",
    "to_number",
    "session_cost",
    "id",
    "original_number",
    "iccid",
    "name",
)
INTEGER = "('UBIGINT', 'BIGINT')"
NUMBER = "('UBIGINT', 'BIGINT', 'DOUBLE')"

PAGE_COLUMNS = (
    "{day: 'DATE', selector: 'VARCHAR', page: 'INTEGER', "
    "body: 'STRUCT(code INTEGER, message VARCHAR, result STRUCT(items JSON[]))'}"
)


FIELDS_STRUCTURE = "{" + ", ".join(f'"{name}": "JSON"' for name in CONTRACT_FIELDS) + "}"
"""Each item is parsed once into its contract fields, each still JSON (type kept)."""


def _must(field: str, allowed: str, what: str) -> str:
    t = f"json_type(f.{field})"
    return (
        f"CASE WHEN f.{field} IS NULL THEN '{field}: missing' "
        f"WHEN {t} NOT IN {allowed} THEN '{field}: expected {what}, got ' || lower({t}) END"
    )


COST_TEXT = "CAST(f.session_cost AS VARCHAR)"
"""The number exactly as the API wrote it; cast from this text, money is never a float."""

REASON = f"""NULLIF(concat_ws('; ',
    {_must("sid", INTEGER, "an integer")},
    {_must("date", INTEGER, "a Unix timestamp")},
    {_must("type", "('VARCHAR')", "a string")},
    CASE WHEN json_type(f.type) = 'VARCHAR' AND f.type->>'$' NOT IN {EVENT_TYPES}
         THEN 'type: unknown value ' || (f.type->>'$') END,
    {_must("to_number", "('VARCHAR')", "a string")},
    {_must("session_cost", NUMBER, "a number")},
    CASE WHEN json_type(f.session_cost) IN {NUMBER}
          AND TRY_CAST({COST_TEXT} AS {COST}) IS NULL
         THEN 'session_cost: not representable as {COST}'
         WHEN json_type(f.session_cost) IN {NUMBER} AND TRY_CAST({COST_TEXT} AS {COST}) < 0
         THEN 'session_cost: negative (' || {COST_TEXT} || ')' END,
    {_must("id", INTEGER, "an integer")},
    {_must("original_number", "('VARCHAR')", "a string")},
    {_must("iccid", "('VARCHAR')", "a string")},
    CASE WHEN json_type(f.name) NOT IN ('VARCHAR', 'NULL')
         THEN 'name: expected a string or null, got ' || lower(json_type(f.name)) END
), '')"""
"""Every contract rule the item breaks, or NULL when it breaks none."""

ITEMS_CTE = f"""
items AS (
    SELECT day, selector, page, unnest(body.result.items) AS item
    FROM read_json($files, format = 'newline_delimited', columns = {PAGE_COLUMNS})
),
checked AS (
    SELECT *, {REASON} AS reason
    FROM (SELECT *, json_transform(item, '{FIELDS_STRUCTURE}') AS f FROM items)
)"""
"""Every item of the landing files `$files`, its contract fields `f`, and its `reason`."""

EXTRA_FIELDS = f"len(list_filter(json_keys(item), lambda k: k NOT IN {CONTRACT_FIELDS})) > 0"

STAGE_SQL = f"""
CREATE OR REPLACE TEMP TABLE staged_items AS
WITH {ITEMS_CTE}
SELECT
    day, selector, page, reason,
    CASE WHEN reason IS NOT NULL THEN item END AS item,
    {EXTRA_FIELDS} AS has_extra_fields,
    TRY_CAST(f.sid AS BIGINT) AS sid,
    to_timestamp(TRY_CAST(f.date AS BIGINT)) AS occurred_at,
    f.type->>'$' AS type,
    f.to_number->>'$' AS to_number,
    TRY_CAST({COST_TEXT} AS {COST}) AS cost_eur,
    TRY_CAST(f.id AS BIGINT) AS sim_id,
    f.original_number->>'$' AS sim_number,
    f.iccid->>'$' AS iccid,
    f.name->>'$' AS sim_name
FROM checked
"""
"""Every item of the given landing files, typed where valid, with why it is invalid
(`reason` NULL when valid; the verbatim item is kept only for the invalid ones)."""

INSERT_EVENTS_SQL = """
INSERT INTO call_sms_events
SELECT
    sid, occurred_at, day, type, to_number, cost_eur, sim_id, sim_number, iccid, sim_name,
    timezone($timezone, occurred_at)::DATE <> day AS out_of_window,
    page AS source_page
FROM staged_items
WHERE reason IS NULL AND selector = 'all'
QUALIFY row_number() OVER (PARTITION BY day, sid ORDER BY page) = 1
"""
"""One row per (day, sid) from the account-wide pull; a sid repeated across pages is kept once."""

INSERT_REJECTS_SQL = """
INSERT INTO call_sms_rejects
SELECT day, selector, page, reason, item FROM staged_items WHERE reason IS NOT NULL
"""

STAGE_SUMMARY_SQL = """
SELECT day,
       count(*) FILTER (WHERE selector = 'all') AS items,
       count(*) FILTER (WHERE reason IS NOT NULL) AS rejects,
       count(*) FILTER (WHERE reason IS NULL AND selector = 'all')
         - count(DISTINCT sid) FILTER (WHERE reason IS NULL AND selector = 'all')
           AS duplicates,
       count(*) FILTER (WHERE has_extra_fields) AS items_with_extra_fields,
       count(*) AS items_all_selectors
FROM staged_items GROUP BY day ORDER BY day
"""

MEMBERSHIP_SQL = f"""
INSERT INTO sim_group_membership
WITH {ITEMS_CTE}
SELECT DISTINCT day, g.group_id, g.group_name, CAST(f.id AS BIGINT) AS sim_id
FROM checked JOIN group_names g ON g.group_id = CAST(substr(checked.selector, 3) AS INTEGER)
WHERE reason IS NULL
"""
"""Which SIMs each configured group's pull returned that day (valid items only)."""

GROUP_SIDS_MISSING_SQL = f"""
WITH {ITEMS_CTE}
SELECT c.day, c.selector, count(DISTINCT CAST(c.f.sid AS BIGINT)) AS missing
FROM checked c
ANTI JOIN call_sms_events e ON e.day = c.day AND e.sid = CAST(c.f.sid AS BIGINT)
WHERE c.reason IS NULL
GROUP BY ALL ORDER BY ALL
"""
"""Per day and group pull: valid sids the group returned that the account pull did not."""

EMPTY_STAGE_SQL = f"""
CREATE OR REPLACE TEMP TABLE staged_items (
    day DATE, selector VARCHAR, page INTEGER, reason VARCHAR, item JSON,
    has_extra_fields BOOLEAN, sid BIGINT, occurred_at TIMESTAMPTZ, type VARCHAR,
    to_number VARCHAR, cost_eur {COST}, sim_id BIGINT, sim_number VARCHAR, iccid VARCHAR,
    sim_name VARCHAR
)
"""


def stage_items(con: duckdb.DuckDBPyConnection, files: list[str]) -> None:
    """Fill the temp table `staged_items` from the given landing files (none: empty)."""
    if files:
        con.execute(STAGE_SQL, {"files": files})
    else:
        con.execute(EMPTY_STAGE_SQL)
