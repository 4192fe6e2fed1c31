"""An analyst's DuckDB session on the warehouse: a run waits for it, names it, and if it
stays open fails saying so, with the previous data of its days intact."""

from __future__ import annotations

import glob
import logging
import threading

import duckdb
import pytest

from tests.assets.test_writes import snapshot
from tests.conftest import DAY, run_logs, warehouse_held

DAY_KEY = DAY.isoformat()


class _WhenLogged(logging.Handler):
    """Calls `then` once a record containing `text` is logged."""

    def __init__(self, text: str, then) -> None:
        super().__init__()
        self.text, self.then = text, then

    def emit(self, record: logging.LogRecord) -> None:
        if self.text in record.getMessage():
            self.then()


def test_a_run_waits_for_a_session_on_the_warehouse_and_names_it(make_pipeline):
    pipeline = make_pipeline()
    pipeline.run(DAY_KEY)
    before = snapshot(pipeline)
    with warehouse_held(pipeline.resources["duckdb"].database) as holder:
        # The session ends 2.5 s after the run says it is waiting for it, as an analyst's
        # would: the step looks again every second meanwhile, and warns once.
        release = _WhenLogged(f"(PID {holder.pid})", threading.Timer(2.5, holder.stdin.close).start)
        logger = logging.getLogger("dagster")
        logger.addHandler(release)
        try:
            result = pipeline.run(DAY_KEY)
        finally:
            logger.removeHandler(release)
    assert result.success
    assert snapshot(pipeline) == before
    assert len(before["call_sms_events"]) > 300
    waits = [m for m in run_logs(pipeline, result) if "is held by another process" in m]
    assert len(waits) == 1, "one warning, from the step that found the file held"
    assert f"(PID {holder.pid})" in waits[0]
    assert "waiting up to 120 s" in waits[0]
    assert "Could not set lock" not in waits[0], "the process named, not DuckDB's whole error"


def test_a_session_left_open_fails_the_run_naming_it_and_keeps_the_day(make_pipeline):
    pipeline = make_pipeline()
    pipeline.run(DAY_KEY)
    before = snapshot(pipeline)
    pages_before = pipeline.sql("SELECT * FROM call_sms_raw_pages ORDER BY ALL")
    pipeline.reconfigure("duckdb", lock_wait_s=2)
    warehouse = pipeline.resources["duckdb"]
    with warehouse_held(warehouse.database) as holder:
        result = pipeline.run(DAY_KEY, raise_on_error=False)
    assert not result.success
    failures = [e for e in result.all_events if e.is_step_failure]
    assert [e.step_key for e in failures] == ["call_sms_raw_pages"]
    error = failures[0].step_failure_data.error.cause
    assert error.cls_name == "WarehouseBusyError"
    assert f"the warehouse {warehouse.database} stayed held by another process" in error.message
    assert f"(PID {holder.pid})" in error.message
    assert "for the 2 s this step waited (NOVA_DUCKDB_LOCK_WAIT)" in error.message
    assert "re-execute the run" in error.message
    assert pipeline.sql("SELECT * FROM call_sms_raw_pages ORDER BY ALL") == pages_before
    assert snapshot(pipeline) == before
    fetches = glob.glob(str(pipeline.root / "landing/call_sms/day=*/fetch=*"))
    assert len(fetches) == 1, "the fetch the run could not commit is discarded"


def test_an_error_other_than_the_lock_is_raised_as_duckdb_gave_it(tmp_path):
    from nova_pipeline.resources import WarehouseResource

    missing = tmp_path / "no such folder" / "nova.duckdb"
    warehouse = WarehouseResource(database=str(missing), lock_wait_s=600)
    with pytest.raises(duckdb.IOException, match="no such folder"), warehouse.get_connection():
        pass
