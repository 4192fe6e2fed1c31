"""Runs the instance shows as started whose process is gone, marked failed.

`make demo` runs its job in its own process. Killed there (`kill -9`, out of memory), or
with the machine stopped mid-run (in `make ui` too), nothing records the run's end and it
stays "started" for good. The run queue counts such a run as holding the warehouse's pool
(dagster.yaml: one run at a time), so every later run, the daily schedule's and each
backfill's, waited in the queue for ever: "blocked by global concurrency limits" in the
daemon's log (seen here). Dagster's run monitoring cannot tell: the default run launcher
has no health check of its run workers, and a code server fails only the runs it started
itself, while it lives.

A run names its process in its engine events ("Executing steps in process (pid: N)"). The
pid alone does not say the process is the run's: Linux hands pids out again once it has
used them all, and many systems have 32,768 of them (this machine went through them in
minutes under a benchmark), so a process that started after the run logged the pid is
another one. The sensor marks failed a run whose process it found gone at two ticks in a
row: a code server fails a run of its own within a second, and the second look keeps the
two from both failing it. It acts only where runs are this machine's processes (the
default run launcher).
"""

import json
import os
from dataclasses import dataclass
from pathlib import Path

import dagster as dg

SENSOR_NAME = "stranded_runs"
INTERVAL_S = 30
PID_REUSE_SLACK_S = 60
"""How much later than the run logged its pid a process holding that pid must have started
to count as another process: room for the clock being set forward meanwhile."""


@dataclass(frozen=True)
class StrandedRun:
    run: dg.DagsterRun
    pid: int


def _booted_at() -> float:
    """When this machine started (epoch seconds), from Linux's /proc/stat; 0 elsewhere."""
    try:
        lines = Path("/proc/stat").read_text().splitlines()
    except OSError:
        return 0.0
    return next((float(line.split()[1]) for line in lines if line.startswith("btime ")), 0.0)


def _ended_or_replaced(pid: int, since: float, booted: float) -> bool:
    """Whether the process holding `pid` has ended but is not yet reaped by its parent (a
    zombie, which still answers a signal), or started more than PID_REUSE_SLACK_S after
    `since`: another process, given the pid since. From Linux's /proc; False without it."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return False
    state, started_ticks = fields[0], int(fields[19])
    started = booted + started_ticks / os.sysconf("SC_CLK_TCK")
    return state in ("Z", "X") or (booted > 0 and started > since + PID_REUSE_SLACK_S)


def process_gone(pid: int, since: float) -> bool:
    """Whether the process that logged `pid` at `since` (epoch seconds) has ended: the
    machine has started since (its pids were handed out anew), no process has the pid, it
    is a zombie, or the process that has it started after `since`. POSIX only: on Windows
    `os.kill(pid, 0)` ends the process."""
    booted = _booted_at()
    if booted > since:
        return True
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        pass  # another user's process has the pid; /proc still says when it started
    return _ended_or_replaced(pid, since, booted)


def run_process(instance: dg.DagsterInstance, run_id: str) -> tuple[int, float] | None:
    """The pid of the process that last said it executes the run's steps, and when."""
    named = None
    for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ENGINE_EVENT):
        data = entry.dagster_event.engine_event_data if entry.dagster_event else None
        pid = data.metadata.get("pid") if data else None
        if pid is not None:
            named = (int(pid.value), entry.timestamp)
    return named


def stranded_runs(instance: dg.DagsterInstance) -> list[StrandedRun]:
    """The started runs whose process has ended."""
    stranded = []
    for run in instance.get_runs(dg.RunsFilter(statuses=[dg.DagsterRunStatus.STARTED])):
        named = run_process(instance, run.run_id)
        if named is not None and process_gone(*named):
            stranded.append(StrandedRun(run, named[0]))
    return stranded


def fail_stranded(instance: dg.DagsterInstance, stranded: StrandedRun) -> bool:
    """Mark the run failed, saying why and what its days hold; False if it ended meanwhile."""
    run = instance.get_run_by_id(stranded.run.run_id)
    if run is None or run.status != dg.DagsterRunStatus.STARTED:
        return False
    instance.report_run_failed(
        run,
        f"The run's process (pid {stranded.pid}) ended without recording its end: killed "
        "(kill -9, out of memory) or the machine stopped. Marked failed by the "
        f"{SENSOR_NAME} sensor, so the runs queued behind it can use the warehouse. Each "
        "day is written in one transaction: a day this run did not finish holds what it "
        "held before until a new run materializes it (Dagster re-executes a run it "
        "launched, once: dagster.yaml's run_retries).",
    )
    return True


def build_stranded_runs_sensor() -> dg.SensorDefinition:
    @dg.sensor(
        name=SENSOR_NAME,
        minimum_interval_seconds=INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Every {INTERVAL_S} s: a run shown as started whose process has ended (`make "
            "demo` killed, the machine stopped mid-run) is marked failed once it is seen so "
            "twice, so the runs queued behind it on the warehouse's pool can start."
        ),
    )
    def stranded_runs_sensor(context: dg.SensorEvaluationContext) -> dg.SkipReason:
        if os.name != "posix":
            return dg.SkipReason("a run's process is looked up on POSIX systems only")
        if not isinstance(context.instance.run_launcher, dg.DefaultRunLauncher):
            return dg.SkipReason(
                "runs are launched by "
                f"{type(context.instance.run_launcher).__name__}, whose processes may be on "
                "other machines: this sensor cannot tell whether they still run"
            )
        seen_before = set(json.loads(context.cursor or "[]"))
        failed, waiting = [], []
        for stranded in stranded_runs(context.instance):
            if stranded.run.run_id not in seen_before:
                waiting.append(stranded.run.run_id)
            elif fail_stranded(context.instance, stranded):
                failed.append(stranded.run.run_id)
                context.log.warning(
                    f"run {stranded.run.run_id} marked failed: its process "
                    f"(pid {stranded.pid}) has ended"
                )
        context.update_cursor(json.dumps(waiting))
        said = [f"marked failed: {', '.join(failed)}"] if failed else []
        if waiting:
            said.append(
                f"process ended, failed at the next tick if still started: {', '.join(waiting)}"
            )
        return dg.SkipReason("; ".join(said) or "no started run whose process has ended")

    return stranded_runs_sensor
