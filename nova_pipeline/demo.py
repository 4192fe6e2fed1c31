"""`make demo`: the simulator, the whole pipeline through Dagster for the last 7 complete
provider days, and the two tables an analyst reads first.

Runs are recorded in DAGSTER_HOME (the Makefile points it into the repo), so `make ui`
shows them afterwards.
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import signal
import sys
import time
import uuid
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import dagster as dg

DEMO_GROUPS = "1=Trackers,2=Vans,3=Meters,4=Gates,5=Pilot,6=Spare"
DAYS = 7
SIMULATOR_ARGS = ("--groups", "6", "--sims", "500")
"""The simulated fleet of `make demo` and `make ui`: 500 SIMs in the six groups named above."""


def print_table(title: str, headers: list[str], rows: list[tuple], right: set[str]) -> None:
    """Columns named in `right` (counts, euro, ids) are right-aligned; text and codes
    made of digits, such as an ICCID, stay left-aligned. A value the API left out (a SIM
    with no name) prints as "-", apart from a name that is empty."""
    cells = [headers, *[[("-" if v is None else str(v)) for v in row] for row in rows]]
    widths = [max(len(r[i]) for r in cells) for i in range(len(headers))]
    print(f"\n{title}")
    for n, row in enumerate(cells):
        print(
            "  ".join(
                v.rjust(w) if h in right else v.ljust(w)
                for v, w, h in zip(row, widths, headers, strict=True)
            ).rstrip()
        )
        if n == 0:
            print("  ".join("-" * w for w in widths))


IN_TWO_GROUPS = "(a SIM the pulls put in two groups counts in each group's row, once in the total)"


def totals_note(costs: list[Decimal], total: Decimal) -> str | None:
    """Why the group rows printed do not add up to the total printed, when they do not: an
    analyst adding them up by hand should not take a cent of rounding for a lost euro."""
    if sum(costs) != total:
        return IN_TWO_GROUPS
    rows = sum(Decimal(f"{cost:.2f}") for cost in costs)
    if rows != Decimal(f"{total:.2f}"):
        return (
            f"(each amount is rounded to the cent on its own: the rows add up to {rows:,.2f}, "
            f"their exact amounts to {total:,.2f})"
        )
    return None


def checks_summary(result: dg.ExecuteInProcessResult) -> str:
    """How many of the run's check results passed: each check judges each day of the run
    (reconciliation to the cent, unique sids, ...), so the tables below come with the
    word that they can be trusted, or the lines after this one say which cannot."""
    evaluations = result.get_asset_check_evaluations()
    checks = {e.asset_check_key for e in evaluations}
    passed = sum(e.passed for e in evaluations)
    return (
        f"checks: {passed} of {len(evaluations)} results passed "
        f"({len(checks)} checks, a result for each day)"
    )


QUERY_INTERRUPTED = "RuntimeError: Query interrupted"
"""What DuckDB raises when an interrupt lands in a query, in place of Dagster's error."""


def run_failure(result: dg.ExecuteInProcessResult) -> tuple[str, int]:
    """What stopped the run, in one line, and the exit code: the step and the first line of
    its error (the rest is in the run's log), or that Ctrl-C interrupted it. A step's
    writes are one transaction, so the step that stopped wrote nothing."""
    failures = result.get_step_failure_events()
    if failures:
        where, error = (
            f" at {failures[0].step_key}, which wrote nothing",
            failures[0].step_failure_data.error,
        )
    else:
        where, error = "", result.get_run_failure_event().job_failure_data.error
    while error and error.cause and error.cls_name == "DagsterExecutionStepExecutionError":
        error = error.cause
    log = "`make ui` shows the run's log"
    if error and (
        error.cls_name == "DagsterExecutionInterruptedError"
        or error.message.strip() == QUERY_INTERRUPTED
    ):
        return f"interrupted{where}; {log}", 130
    what = f": {error.message.strip().splitlines()[0]}" if error else ""
    return f"the run failed{where}{what}\n{log}", 1


def failed_checks(result: dg.ExecuteInProcessResult) -> list[str]:
    """One line per failed check result of the run, its severity first: a WARN (e.g. a
    day pulled before the provider's sync) does not stop the run, so the tables below it
    would otherwise hide it."""
    return [
        f"{e.severity.value} check {e.check_name}: {e.description}"
        for e in result.get_asset_check_evaluations()
        if not e.passed
    ]


def warehouse_unavailable(path: Path) -> str | None:
    """Why the warehouse cannot be opened for writing now, or None if it can.

    The demo runs in process, outside the run queue and its pool, so a run of `make ui`
    or a DuckDB session holding the file is found here, before the run, rather than by
    its first step waiting up to two minutes for the file (WarehouseResource)."""
    import duckdb

    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        duckdb.connect(str(path)).close()
    except duckdb.IOException as exc:
        return str(exc)
    return None


def output_to_nowhere() -> None:
    """After SIGHUP (the terminal closed) nothing reads the output and writing it fails:
    it goes to /dev/null rather than cut the stopping short (`make demo`, `make ui`)."""
    nowhere = os.open(os.devnull, os.O_WRONLY)
    os.dup2(nowhere, sys.stdout.fileno())
    os.dup2(nowhere, sys.stderr.fileno())


def _hung_up(_signum: int, _frame: object) -> None:
    """The terminal closed: stop as on Ctrl-C, which Dagster turns into a run recorded as
    failed. Python's default ended the demo at once, and its run stayed "started" for good
    in `make ui`, its days shown as being materialized (seen here)."""
    output_to_nowhere()
    signal.raise_signal(signal.SIGINT)


def _not_an_interrupted_close(record: logging.LogRecord) -> bool:
    return not (record.exc_info and not issubclass(record.exc_info[0], Exception))


def quiet_interrupted_closes() -> None:
    """Ctrl-C can land while Dagster's SQLite event log closes a connection: SQLAlchemy's
    pool then logs "Exception closing connection" with the interrupt's traceback (seen here,
    once in many runs) before raising it on, and Dagster ends the run as failed, which the
    demo says. Only that record is dropped; any other pool error still reaches stderr."""
    handler = logging.StreamHandler()
    handler.setLevel(logging.WARNING)
    handler.addFilter(_not_an_interrupted_close)
    pool = logging.getLogger("sqlalchemy.pool")
    pool.addHandler(handler)
    pool.propagate = False


NOT_STARTED = "interrupted before the run started; nothing was written"
ENDED = "interrupted after the run ended; `make ui` shows it"


@dataclass
class Stage:
    """What Ctrl-C says when it lands outside the run's steps (the simulator starting,
    Dagster loading, the tables being read), where Dagster does not turn it into a failed
    run (`run_failure`): Python's traceback said nothing a user needs."""

    interrupted: str = NOT_STARTED


def interrupted_run(instance: dg.DagsterInstance, run_id: str) -> str:
    """Ctrl-C can get out of `execute_in_process` only before its first step or after its
    last one. A run recorded but not begun is marked failed, not left "not started" in
    `make ui` for good; one that ended stands."""
    run = instance.get_run_by_id(run_id)
    if run is None:
        return NOT_STARTED
    if not run.is_finished:
        instance.report_run_failed(run, "interrupted (Ctrl-C) before its first step")
        return NOT_STARTED
    return ENDED


def main() -> int:
    if signal.getsignal(signal.SIGHUP) is not signal.SIG_IGN:
        signal.signal(signal.SIGHUP, _hung_up)
    quiet_interrupted_closes()
    stage = Stage()
    try:
        return run_demo(stage)
    except KeyboardInterrupt:
        print(stage.interrupted, file=sys.stderr)
        return 130


def run_demo(stage: Stage) -> int:
    from nova_pipeline.simulator.process import simulator_process

    started = time.monotonic()
    with simulator_process(SIMULATOR_ARGS) as api_url:
        os.environ["NOVA_API_URL"] = api_url
        os.environ.setdefault("NOVA_GROUPS", DEMO_GROUPS)

        import dagster as dg

        from nova_pipeline.clock import latest_complete_day
        from nova_pipeline.definitions import defs
        from nova_pipeline.settings import current_settings

        settings = current_settings()
        last = latest_complete_day(
            dt.datetime.now(dt.UTC), settings.timezone, settings.schedule_time
        )
        first = last - dt.timedelta(days=DAYS - 1)
        reason = warehouse_unavailable(settings.duckdb_path)
        if reason is not None:
            print(
                f"cannot write the warehouse {settings.duckdb_path}: {reason}\n"
                "If another process holds it (a run in `make ui`, a DuckDB session), "
                "run `make demo` again once that ends.",
                file=sys.stderr,
            )
            return 1
        print(
            f"simulator at {api_url}; materializing {first}..{last} "
            f"({settings.timezone} days) into {settings.duckdb_path}",
            flush=True,
        )
        run_id = str(uuid.uuid4())
        with dg.DagsterInstance.get() as instance:
            try:
                result = defs.resolve_job_def("call_sms_job").execute_in_process(
                    instance=instance,
                    run_id=run_id,
                    run_config={"loggers": {"console": {"config": {"log_level": "INFO"}}}},
                    tags={
                        "dagster/asset_partition_range_start": first.isoformat(),
                        "dagster/asset_partition_range_end": last.isoformat(),
                        # Run here, not in a code location: `make ui`'s daemon could not
                        # re-execute it, and said so on the run once the stranded_runs
                        # sensor failed it (the demo killed). `make demo` again does that.
                        "dagster/max_retries": "0",
                    },
                    raise_on_error=False,
                )
            except KeyboardInterrupt:
                stage.interrupted = interrupted_run(instance, run_id)
                raise
        stage.interrupted = ENDED
        if result.get_asset_check_evaluations():
            print(checks_summary(result))
        for line in failed_checks(result):
            print(line)
        if not result.success:
            said, code = run_failure(result)
            print(said, file=sys.stderr)
            return code

        import duckdb

        from nova_pipeline.transforms.costs import (
            ACCOUNT_TOTALS_SQL,
            GROUP_TOTALS_SQL,
            TOP_SIMS_SQL,
        )

        with duckdb.connect(str(settings.duckdb_path), read_only=True) as con:
            groups = con.execute(GROUP_TOTALS_SQL, [first, last]).fetchall()
            events, total = con.execute(ACCOUNT_TOTALS_SQL, [first, last]).fetchone()
            top = con.execute(TOP_SIMS_SQL, [first, last]).fetchall()
    print_table(
        f"Cost per group, {first}..{last} (euro)",
        ["group", "name", "active SIMs (max/day)", "events", "cost €"],
        [(g, n, a, f"{e:,}", f"{c:,.2f}") for g, n, a, e, c in groups]
        + [("", "total", "", f"{events:,}", f"{total:,.2f}")],
        right={"group", "active SIMs (max/day)", "events", "cost €"},
    )
    if note := totals_note([row[4] for row in groups], total):
        print(note)
    print_table(
        f"Top 10 SIMs by cost, {first}..{last} (euro)",
        ["sim_id", "name", "iccid", "events", "cost €"],
        [(*row[:3], f"{row[3]:,}", f"{row[4]:,.2f}") for row in top],
        right={"sim_id", "events", "cost €"},
    )
    print(
        f"\ndone in {time.monotonic() - started:.0f} s; "
        "`make ui` shows these runs, assets and checks"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
