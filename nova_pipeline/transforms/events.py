"""Raw pages -> typed events and quarantined items, as DuckDB SQL over the landing files.

DuckDB parses the verbatim bodies in bulk (no page ever becomes Python objects). The
client has already told apart the pages whose every item meets the contract (checked in
C by msgspec, `api/models.Item`): those are read with fixed column types, the fast path.
The items of any other page are judged here rule by rule; an item failing any rule goes
to `call_sms_rejects` with every rule it broke, the rest join the typed rows. Money is
read from its JSON text into DECIMAL and never summed as a float: digit for digit on the
fast path; on the rule-by-rule path DuckDB's JSON functions hold a number as a double
first, which keeps every cost of up to 15 significant digits (under a billion euro at 6
decimals) exact.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

import duckdb

from nova_pipeline.api.models import EPOCH_RANGE, INT64_RANGE, NON_FINITE_LITERALS
from nova_pipeline.warehouse import COST, EVENT_TYPES

CONFORMING_ITEM = {
    "sid": "BIGINT",
    "date": "BIGINT",
    "type": "VARCHAR",
    "to_number": "VARCHAR",
    "session_cost": COST,
    "id": "BIGINT",
    "original_number": "VARCHAR",
    "iccid": "VARCHAR",
    "name": "VARCHAR",
}
"""Column types of an item that meets the contract, for DuckDB's JSON reader."""

CONTRACT_FIELDS = tuple(CONFORMING_ITEM)

INTEGER = "('UBIGINT', 'BIGINT')"
NUMBER = "('UBIGINT', 'BIGINT', 'DOUBLE')"

PAGE_COLUMNS = "{day: 'DATE', selector: 'VARCHAR', page: 'INTEGER', body: '%s'}"
NONCONFORMING_PAGE_COLUMNS = PAGE_COLUMNS % "STRUCT(result STRUCT(items JSON[]))"


def _conforming_items() -> str:
    """Every item `i` of the conforming pages (a file list literal goes in `%s`), read with
    fixed types."""
    item = ", ".join(f"{name} {type_}" for name, type_ in CONFORMING_ITEM.items())
    columns = PAGE_COLUMNS % f"STRUCT(result STRUCT(items STRUCT({item})[]))"
    return (
        "SELECT day, selector, page, unnest(body.result.items) AS i "
        f"FROM read_json(%s, format = 'newline_delimited', columns = {columns})"
    )


FIELDS_STRUCTURE = "{" + ", ".join(f'"{name}": "JSON"' for name in CONTRACT_FIELDS) + "}"
"""Each item is parsed once into its contract fields, each still JSON (type kept)."""


def _must(field: str, allowed: str, what: str) -> str:
    t = f"json_type(f.{field})"
    return (
        f"CASE WHEN f.{field} IS NULL AND json_exists(item, '$.{field}') "
        f"THEN '{field}: expected {what}, got null' "
        f"WHEN f.{field} IS NULL THEN '{field}: missing' "
        f"WHEN {t} NOT IN {allowed} THEN '{field}: expected {what}, got ' || lower({t}) END"
    )


def _within(field: str, bounds: tuple[int, int], what: str) -> str:
    """An integer field beyond what it can be stored as (JSON has no bound on integers)."""
    return (
        f"CASE WHEN json_type(f.{field}) IN {INTEGER} "
        f"AND NOT TRY_CAST(f.{field} AS HUGEINT) BETWEEN {bounds[0]} AND {bounds[1]} "
        f"THEN '{field}: ' || CAST(f.{field} AS VARCHAR) || ' is {what}' END"
    )


COST_TEXT = "CAST(f.session_cost AS VARCHAR)"
"""The number as the API wrote it, back from a double: the same value for up to 15
significant digits. The DECIMAL is parsed from these digits, rounded once, to the
micro-euro, as on the fast path."""

NON_FINITE = str(NON_FINITE_LITERALS)
"""Literals the client lets through to the rules; DuckDB reads them as doubles."""

REASON = f"""CASE WHEN json_type(item) IS DISTINCT FROM 'OBJECT'
THEN 'item: expected an object, got ' || coalesce(lower(json_type(item)), 'null')
ELSE NULLIF(concat_ws('; ',
    {_must("sid", INTEGER, "an integer")},
    {_within("sid", INT64_RANGE, "beyond a 64-bit integer")},
    {_must("date", INTEGER, "a Unix timestamp")},
    {_within("date", EPOCH_RANGE, "not a time in the years 1-9999")},
    {_must("type", "('VARCHAR')", "a string")},
    CASE WHEN json_type(f.type) = 'VARCHAR' AND f.type->>'$' NOT IN {EVENT_TYPES}
         THEN 'type: unknown value ' || (f.type->>'$') END,
    {_must("to_number", "('VARCHAR')", "a string")},
    {_must("session_cost", NUMBER, "a number")},
    CASE WHEN {COST_TEXT} IN {NON_FINITE}
         THEN 'session_cost: expected a number, got ' || {COST_TEXT}
         WHEN json_type(f.session_cost) IN {NUMBER}
          AND TRY_CAST({COST_TEXT} AS {COST}) IS NULL
         THEN 'session_cost: not representable as {COST}'
         WHEN json_type(f.session_cost) IN {NUMBER} AND TRY_CAST(f.session_cost AS DOUBLE) < 0
         THEN 'session_cost: negative (' || {COST_TEXT} || ')' END,
    {_must("id", INTEGER, "an integer")},
    {_within("id", INT64_RANGE, "beyond a 64-bit integer")},
    {_must("original_number", "('VARCHAR')", "a string")},
    {_must("iccid", "('VARCHAR')", "a string")},
    CASE WHEN json_type(f.name) <> 'VARCHAR'
         THEN 'name: expected a string or null, got ' || lower(json_type(f.name)) END,
    NULLIF(array_to_string(list_transform(
        list_sort(list_distinct(list_filter(keys, lambda k, i: list_position(keys, k) < i))),
        lambda k: k || ': sent more than once'), '; '), '')
), '') END"""
"""Every contract rule the item breaks, or NULL when it breaks none; an item that is not an
object breaks the one rule that says so, not each field's. A field that is JSON null
comes out of `json_transform` as SQL NULL, as a missing one does: `_must` tells the two
apart for the required fields; a null or missing `name` breaks no rule. A cost of NaN or
±Infinity is named as such, not as too large. A cost's sign is judged before rounding:
-0.0000004 is negative, though it rounds to 0.000000. A key sent twice in one item makes
it ambiguous (JSON readers differ on which value wins: `json_transform` keeps the first,
msgspec the last), so it is a broken rule too."""

NONCONFORMING_ITEMS = f"""
SELECT day, selector, page, unnest(body.result.items) AS item
FROM read_json($files, format = 'newline_delimited', columns = {NONCONFORMING_PAGE_COLUMNS})
"""
"""Every item of the nonconforming pages `$files`, as JSON."""

NO_ITEMS = (
    "SELECT NULL::DATE AS day, NULL::VARCHAR AS selector, NULL::INTEGER AS page, "
    "NULL::JSON AS item WHERE false"
)
"""No item, typed as NONCONFORMING_ITEMS: `read_json` cannot read an empty file list."""


def _stage_sql(items: str) -> str:
    return f"""
CREATE OR REPLACE TEMP TABLE staged_items AS
WITH items AS ({items}),
checked AS (
    SELECT *, {REASON} AS reason
    FROM (
        SELECT *, json_transform(item, '{FIELDS_STRUCTURE}') AS f, json_keys(item) AS keys
        FROM items
    )
)
SELECT
    day, selector, page, reason,
    CASE WHEN reason IS NOT NULL THEN coalesce(item, 'null'::JSON) END AS item,
    len(list_filter(keys, lambda k: k NOT IN {CONTRACT_FIELDS})) > 0 AS has_extra_fields,
    TRY_CAST(f.sid AS BIGINT) AS sid,
    try(to_timestamp(TRY_CAST(f.date AS BIGINT))) AS occurred_at,
    f.type->>'$' AS type,
    f.to_number->>'$' AS to_number,
    TRY_CAST({COST_TEXT} AS {COST}) AS cost_eur,
    TRY_CAST(f.id AS BIGINT) AS sim_id,
    f.original_number->>'$' AS sim_number,
    f.iccid->>'$' AS iccid,
    f.name->>'$' AS sim_name
FROM checked
"""


STAGE_SQL = _stage_sql(NONCONFORMING_ITEMS)
"""Every item of the nonconforming pages `$files`, typed where valid, with why it is
invalid (`reason` NULL when valid; the parsed item is kept only for the invalid ones, a
`null` in the items list as JSON `null`: unnested, it is SQL NULL)."""

EMPTY_STAGE_SQL = _stage_sql(NO_ITEMS)
"""The same table with no row, for a run whose pages all conform."""

VALID_COLUMNS = (
    "day, selector, page, sid, occurred_at, type, to_number, cost_eur, sim_id, sim_number, "
    "iccid, sim_name"
)

CONFORMING_SQL = f"""
SELECT day, selector, page, i.sid, to_timestamp(i.date) AS occurred_at, i.type, i.to_number,
       i.session_cost AS cost_eur, i.id AS sim_id, i.original_number AS sim_number, i.iccid,
       i.name AS sim_name
FROM ({_conforming_items()})
"""
"""Every item of the conforming pages (a file list literal goes in `%s`), typed on read."""

GROUP_COLUMNS = "day, selector, sid, sim_id"
GROUP_CONFORMING_SQL = f"""
SELECT day, selector, i.sid, i.id AS sim_id FROM ({_conforming_items()})
"""
"""Sid and SIM of every item of the conforming group pages: all that membership and the
group check use. Every field is still read: DuckDB refuses an item with a key sent twice
only when it reads that key, and such an item must go to the rules here as it does in the
account-wide pull (`run_staged`): else membership would take an item the account-wide pull
quarantined, and the group check find its sid missing there. Reading two fields only was
0.24 s a million items instead of 0.43 s (2026-12-05)."""


def stage_items(
    con: duckdb.DuckDBPyConnection, conforming: list[str], nonconforming: list[str]
) -> None:
    """Judge the items of the given landing files, in two temp objects of `con`:
    `staged_items` (every item of the nonconforming pages, with its `reason`) and the view
    `valid_items` (every item that meets the contract, typed, from both kinds of page)."""
    _stage(con, "valid_items", VALID_COLUMNS, CONFORMING_SQL, conforming, nonconforming)


def stage_group_items(
    con: duckdb.DuckDBPyConnection, conforming: list[str], nonconforming: list[str]
) -> None:
    """The same judgement for group pulls, into the view `group_items`: day, selector, sid
    and SIM of every item that meets the contract."""
    _stage(con, "group_items", GROUP_COLUMNS, GROUP_CONFORMING_SQL, conforming, nonconforming)


def _stage(
    con: duckdb.DuckDBPyConnection,
    view: str,
    columns: str,
    conforming_sql: str,
    conforming: list[str],
    nonconforming: list[str],
) -> None:
    if nonconforming:
        con.execute(STAGE_SQL, {"files": nonconforming})
    else:
        con.execute(EMPTY_STAGE_SQL)
    sources = [f"SELECT {columns} FROM staged_items WHERE reason IS NULL"]
    if conforming:
        sources.append(conforming_sql % _sql_list(conforming))
    con.execute(f"CREATE OR REPLACE TEMP VIEW {view} AS {' UNION ALL '.join(sources)}")


T = TypeVar("T")

StageFunction = Callable[[duckdb.DuckDBPyConnection, list[str], list[str]], None]

DUPLICATE_KEY = "has duplicate key"
"""How DuckDB's typed read words its refusal of an object with a key sent twice."""


def run_staged(
    con: duckdb.DuckDBPyConnection,
    stage: StageFunction,
    conforming: list[str],
    nonconforming: list[str],
    work: Callable[[], T],
    warn: Callable[[str], None],
) -> T:
    """Stage the items with `stage` (`stage_items` or `stage_group_items`) and run `work`,
    which reads them. The client's check lets through an item with a key sent twice (msgspec
    keeps the last value), and DuckDB's typed read of its page then fails the statement;
    as the page comes back the same on every pull, the day would fail for good. So on that
    error every page is staged for the rules, which reject such an item, and `work` runs
    again, slower (the statement it was in has rolled back)."""
    stage(con, conforming, nonconforming)
    try:
        return work()
    except duckdb.InvalidInputException as error:
        if DUPLICATE_KEY not in str(error):
            raise
        warn(
            f"{str(error).splitlines()[0]}. The client's check passed that page, so DuckDB "
            "could not read it with fixed types: every page of this run was judged rule by "
            "rule instead, and an item with a key sent more than once is invalid (those of "
            "the account-wide pull are quarantined in call_sms_rejects with that reason)."
        )
    stage(con, [], conforming + nonconforming)
    return work()


def _sql_list(values: list[str]) -> str:
    """A list literal (a view cannot take parameters); the paths are our own files."""
    return "[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


INSERT_EVENTS_SQL = """
INSERT INTO call_sms_events
SELECT
    sid, occurred_at, day, type, to_number, cost_eur, sim_id, sim_number, iccid, sim_name,
    timezone($timezone, occurred_at)::DATE <> day AS out_of_window,
    page AS source_page
FROM valid_items
WHERE selector = 'all'
"""
"""Every valid item of the account-wide pull, typed; run the two repeated-copies
statements after it."""

REPEATED_COPIES_SQL = """
CREATE OR REPLACE TEMP TABLE repeated_copies AS
SELECT rowid AS row_id, day, kept_day FROM (
    SELECT rowid, day, first_value(day) OVER copies AS kept_day, row_number() OVER copies AS copy
    FROM call_sms_events
    SEMI JOIN (
        SELECT sid FROM call_sms_events
        SEMI JOIN (SELECT sid FROM call_sms_events WHERE day BETWEEN $start AND $end) USING (sid)
        GROUP BY sid HAVING count(*) > 1
    ) USING (sid)
    WINDOW copies AS (
        PARTITION BY sid ORDER BY day BETWEEN $start AND $end, out_of_window, day, source_page
    )
)
WHERE copy > 1 AND day BETWEEN $start AND $end
"""
"""The rows of the run's days whose sid is stored more than once: a later copy on the same
day (two pages served it) or a copy of a sid already kept on another day (the provider's
days overlapped, or it moved a record to another day). Which copy is kept: one stored for
a day outside the run (its day is not rewritten by this run), else the copy whose
timestamp falls inside its day, else the earliest day and page. Only the few repeated
sids are windowed: a window over the whole day needed more than DuckDB's memory cap at a
million items. The semi joins let DuckDB skip the row groups of other days' sids."""

DELETE_REPEATED_COPIES_SQL = (
    "DELETE FROM call_sms_events WHERE rowid IN (SELECT row_id FROM repeated_copies)"
)

INSERT_REJECTS_SQL = """
INSERT INTO call_sms_rejects
SELECT day, selector, page, reason, item FROM staged_items WHERE reason IS NOT NULL
"""

SUMMARY_SQL = """
WITH pages AS (
    SELECT day,
           sum(item_count) FILTER (WHERE selector = 'all') AS items,
           sum(item_count) AS items_all_selectors
    FROM call_sms_raw_pages WHERE day BETWEEN $start AND $end GROUP BY day
),
judged AS (
    SELECT day,
           count(*) FILTER (WHERE reason IS NOT NULL) AS rejects,
           count(*) FILTER (WHERE reason IS NOT NULL AND selector = 'all') AS rejects_all,
           count(*) FILTER (WHERE has_extra_fields) AS items_with_extra_fields
    FROM staged_items GROUP BY day
),
events AS (
    SELECT day, count(*) AS events, sum(cost_eur) AS cost_eur,
           count(*) FILTER (WHERE out_of_window) AS out_of_window
    FROM call_sms_events WHERE day BETWEEN $start AND $end GROUP BY day
)
SELECT p.day, coalesce(e.events, 0), e.cost_eur, coalesce(e.out_of_window, 0),
       coalesce(j.rejects, 0),
       coalesce(p.items, 0) - coalesce(j.rejects_all, 0) - coalesce(e.events, 0)
           AS duplicates,
       coalesce(j.items_with_extra_fields, 0), p.items_all_selectors
FROM pages p LEFT JOIN judged j USING (day) LEFT JOIN events e USING (day)
ORDER BY p.day
"""
"""Per day, after the write: events, cost, out-of-window, rejects, duplicates collapsed,
items with extra fields, items of all pulls. Items are counted from the raw page index."""

MEMBERSHIP_SQL = """
INSERT INTO sim_group_membership
SELECT DISTINCT v.day, g.group_id, g.group_name, v.sim_id
FROM group_items v JOIN group_names g ON g.group_id = CAST(substr(v.selector, 3) AS BIGINT)
"""
"""Which SIMs each configured group's pull returned that day (valid items only)."""

PULLS_CTE = """pulls AS (
    SELECT DISTINCT day, selector, item_count = 0 AS ends
    FROM call_sms_raw_pages WHERE day BETWEEN $start AND $end
)"""
"""Each pull made on each day of a range, from the raw index: `ends` marks the closing empty
page every pull has left since it was kept; a day without one was indexed before that."""

UNPULLED_GROUPS_SQL = f"""
WITH {PULLS_CTE}
SELECT g.group_id, g.group_name, list(d.day ORDER BY d.day)
FROM (SELECT DISTINCT day FROM pulls WHERE ends) d CROSS JOIN group_names g
WHERE NOT EXISTS (SELECT 1 FROM pulls p WHERE p.day = d.day AND p.selector = 'g_' || g.group_id)
GROUP BY g.group_id, g.group_name ORDER BY g.group_id
"""
"""The configured groups with no pull on some days of a range, because those days were
pulled before the group was configured (each pull leaves at least its closing empty page
in the raw index; a day indexed before that page was kept cannot tell, and is left out):
the membership and group cost runs name them."""

GROUP_SIDS_MISSING_SQL = """
WITH v AS MATERIALIZED (SELECT day, selector, sid FROM group_items)
SELECT v.day, v.selector, count(DISTINCT v.sid) AS missing
FROM v
ANTI JOIN (
    SELECT sid FROM call_sms_events
    WHERE sid BETWEEN (SELECT min(sid) FROM v) AND (SELECT max(sid) FROM v)
) e ON e.sid = v.sid
GROUP BY ALL ORDER BY ALL
"""
"""Per day and group pull: valid sids the group returned that are in no day's events (a
sid of a day's group pull may be kept on another day, as a repeated copy). The bounds on
sid change no result; as sids grow with time they let DuckDB skip the row groups of other
days, so the check reads its own days' events, not the whole table (without them: 0.55 s
with one day stored, 1.15 s with 41, about 0.015 s more for each stored day)."""
