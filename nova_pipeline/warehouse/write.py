"""Replace a range of days in a table, atomically: a re-run never doubles a day, and a
failure anywhere in the transaction leaves the previous rows of those days in place."""

from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable
from pathlib import Path

import duckdb

from nova_pipeline.warehouse.schema import TABLES

PAUSE_DIR_ENV = "NOVA_TEST_PAUSE_DIR"
"""Test switch, unset in normal use: while `<dir>/pause` exists and names a table being
written, the writer records its pid in `<dir>/paused` and waits inside the transaction,
after the delete, so a crash test can kill it mid-write."""


def _pause_for_tests(tables: list[str]) -> None:
    folder = os.environ.get(PAUSE_DIR_ENV)
    if not folder:
        return
    request = Path(folder) / "pause"
    if not request.exists() or request.read_text().strip() not in tables:
        return
    (Path(folder) / "paused").write_text(str(os.getpid()))
    deadline = time.monotonic() + 300
    while request.exists() and time.monotonic() < deadline:
        time.sleep(0.1)


def replace_days(
    con: duckdb.DuckDBPyConnection,
    start: dt.date,
    end: dt.date,
    writes: dict[str, Callable[[duckdb.DuckDBPyConnection], None]],
) -> None:
    """For each table: delete its rows of `start..end` and run its insert, all in one
    transaction.

    A COMMIT that fails (the disk full) has ended the transaction, its changes undone, by
    the time it raises: a ROLLBACK after it would fail in turn ("no transaction is active")
    and put its own error in place of the one that says why (seen here)."""
    for table in writes:
        if table not in TABLES:
            raise ValueError(f"unknown table {table}")
    con.execute("BEGIN TRANSACTION")
    try:
        for table, insert in writes.items():
            con.execute(f"DELETE FROM {table} WHERE day BETWEEN ? AND ?", [start, end])
            insert(con)
        _pause_for_tests(list(writes))
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")
