"""Replace a range of days in a table, atomically: a re-run never doubles a day, and a
failure anywhere in the transaction leaves the previous rows of those days in place."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable

import duckdb

from nova_pipeline.warehouse.schema import TABLES

PAUSE_BEFORE_COMMIT_ENV = "NOVA_TEST_PAUSE_BEFORE_COMMIT"
"""Test switch: seconds to sleep inside the transaction, after the delete, so a test can
kill the process mid-write. Unset in normal use."""


def replace_days(
    con: duckdb.DuckDBPyConnection,
    start: dt.date,
    end: dt.date,
    writes: dict[str, Callable[[duckdb.DuckDBPyConnection], None]],
) -> dict[str, int]:
    """For each table: delete its rows of `start..end` and run its insert, all in one
    transaction. Returns the rows each table now holds for those days."""
    for table in writes:
        if table not in TABLES:
            raise ValueError(f"unknown table {table}")
    con.execute("BEGIN TRANSACTION")
    try:
        for table, insert in writes.items():
            con.execute(f"DELETE FROM {table} WHERE day BETWEEN ? AND ?", [start, end])
            insert(con)
        pause = float(os.environ.get(PAUSE_BEFORE_COMMIT_ENV) or 0)
        if pause:
            time.sleep(pause)
        counts = {
            table: con.execute(
                f"SELECT count(*) FROM {table} WHERE day BETWEEN ? AND ?", [start, end]
            ).fetchone()[0]
            for table in writes
        }
        con.execute("COMMIT")
    except BaseException:
        con.execute("ROLLBACK")
        raise
    return counts
