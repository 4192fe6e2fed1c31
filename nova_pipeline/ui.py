"""`make ui`: the simulator and `dagster dev` (webserver + daemon), stopped together on Ctrl-C,
the simulator started again should it end; `make serve`: `dagster dev` alone, for the API
that NOVA_API_URL names; and, for the end-to-end test and the benchmark, a DAGSTER_HOME
configured as `make ui`'s and a small driver of the UI's GraphQL API (backfills). One
`make ui` or `make serve` at a time runs on an instance, and each on a port of its own;
both say as they start whether the warehouse holds every day the instance records.

`dagster dev` started from a non-interactive shell inherits SIGINT and SIGTERM as ignored
(measured here), so it is started in its own session with default signal handling and
stopped through its process group. Being in a session of its own, it never gets the
terminal's SIGHUP: `make ui` stops it on SIGTERM and SIGHUP as on Ctrl-C, and on Linux the
kernel sends it SIGTERM should `make ui` die without a word (SIGKILL).
"""

from __future__ import annotations

import datetime as dt
import fcntl
import functools
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import IO, TYPE_CHECKING

import dagster as dg
import duckdb
import httpx

from nova_pipeline.demo import DEMO_GROUPS, SIMULATOR_ARGS, output_to_nowhere
from nova_pipeline.simulator.process import (
    SimulatorChild,
    end_with_parent,
    simulator_child,
    wait_until_ready,
)

if TYPE_CHECKING:
    from nova_pipeline.settings import Settings

REPO = Path(__file__).resolve().parent.parent


def project_home(path: Path, keep: bool = False) -> Path:
    """A DAGSTER_HOME at `path` with the project's dagster.yaml (pool, run queue), as
    `make demo` and `make ui` have; Dagster's defaults would let runs overlap on DuckDB.
    With `keep`, a dagster.yaml already there (an operator's own) is left as it is."""
    path.mkdir(parents=True, exist_ok=True)
    if not (keep and (path / "dagster.yaml").exists()):
        shutil.copy(REPO / "dagster.yaml", path / "dagster.yaml")
    return path


def _dev_process_setup(parent: int) -> None:
    """In `dagster dev`'s process before it starts: default signal handling, and SIGTERM
    once `parent` ends, which it answers by stopping its webserver and daemon."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    end_with_parent(parent)


DEV_SUPERSEDED = "ignore:Function `dev_command` is superseded"
"""Dagster 1.13 marks `dagster dev` superseded by `dg dev`, of a package this project does
not install: the warning would open every `make ui` asking for a command the user lacks."""


class PortUnusable(RuntimeError):
    """The port `dagster dev` was to serve on is taken, or is no port."""


def _port() -> int:
    """The webserver's port: DAGSTER_PORT, else Dagster's 3000."""
    given = os.environ.get("DAGSTER_PORT", "3000")
    if not (given.isdigit() and 0 < int(given) < 65536):
        raise PortUnusable(f"DAGSTER_PORT: {given!r} is not a port number (1-65535)")
    return int(given)


def _check_port_free(host: str, port: int) -> None:
    """`dagster dev` on a taken port fails in its log only, and its daemon runs on, while
    whatever holds the port answers GraphQL: a second `make ui` would point its banner at
    the first one's UI (seen here). Probed as the webserver binds, so a port a stopped
    server left in TIME_WAIT counts as free."""
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((host, port))
        except OSError as exc:
            raise PortUnusable(
                f"port {port} on {host} is in use ({exc.strerror}): is another `make ui`, "
                "`make serve` or `dagster dev` running? Stop it, or choose another port with "
                "DAGSTER_PORT"
            ) from None


@dataclass(frozen=True)
class DevServer:
    url: str
    """The webserver's, where the UI and its GraphQL API answer."""
    process: subprocess.Popen


@contextmanager
def dagster_dev(
    env: Mapping[str, str], host: str = "127.0.0.1", port: int = 3000, timeout_s: float = 180
) -> Iterator[DevServer]:
    """Run `dagster dev` on the workspace; yield it once its GraphQL API answers."""
    _check_port_free(host, port)
    dagster = Path(sys.executable).with_name("dagster")
    warnings = ",".join(w for w in (env.get("PYTHONWARNINGS"), DEV_SUPERSEDED) if w)
    proc = subprocess.Popen(
        [str(dagster), "dev", "-w", str(REPO / "workspace.yaml"), "-h", host, "-p", str(port)],
        env={**env, "PYTHONWARNINGS": warnings},
        cwd=REPO,
        start_new_session=True,
        preexec_fn=functools.partial(_dev_process_setup, os.getpid()),
    )
    url = f"http://{host}:{port}"
    try:
        wait_until_ready(
            proc,
            lambda: httpx.post(f"{url}/graphql", json={"query": "{ version }"}, timeout=5),
            f"dagster dev on {url}",
            timeout_s,
            poll_s=0.5,
        )
        yield DevServer(url, proc)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()


LAUNCH_BACKFILL = """
mutation Launch($params: LaunchBackfillParams!) {
  launchPartitionBackfill(backfillParams: $params) {
    __typename
    ... on LaunchBackfillSuccess { backfillId }
    ... on PythonError { message }
  }
}"""
BACKFILL_STATUS = """
query Status($id: String!) {
  partitionBackfillOrError(backfillId: $id) {
    ... on PartitionBackfill {
      status
      runs { id status creationTime startTime endTime parentRunId tags { key value } }
    }
    ... on PythonError { message }
  }
}"""
UNFINISHED = ("REQUESTED", "CANCELING", "FAILING")
FINISHED_RUN = ("SUCCESS", "FAILURE", "CANCELED")
"""Backfill statuses still moving; run statuses that end a run."""


def graphql(url: str, query: str, **variables: object) -> dict:
    answer = httpx.post(f"{url}/graphql", json={"query": query, "variables": variables}, timeout=60)
    answer.raise_for_status()
    body = answer.json()
    if body.get("errors"):
        raise RuntimeError(f"GraphQL error: {body['errors']}")
    return body["data"]


def launch_backfill(url: str, asset_keys: Sequence[str], partitions: Sequence[str]) -> str:
    """What the UI's "Materialize selected" over a partition range sends."""
    params = {
        "partitionNames": list(partitions),
        "assetSelection": [{"path": [key]} for key in asset_keys],
    }
    launched = graphql(url, LAUNCH_BACKFILL, params=params)["launchPartitionBackfill"]
    if launched["__typename"] != "LaunchBackfillSuccess":
        raise RuntimeError(f"backfill not launched: {launched}")
    return launched["backfillId"]


def wait_for_backfill(
    url: str, backfill_id: str, timeout_s: float = 900, settle_s: float = 60
) -> dict:
    """Poll until the backfill is done; returns its status and runs.

    When two asset backfills overlap, Dagster 1.13 can leave one REQUESTED for good after
    all its runs succeeded (the other backfill re-materialized some of its partitions;
    dagster issue #19635). If every run has finished, none waits for the re-execution
    Dagster marked it for (`run_retries`: a run that died), and nothing changed for
    `settle_s`, the state is returned as it is, with `"stalled": True`.
    """
    deadline = time.monotonic() + timeout_s
    last_change, last_seen = time.monotonic(), None
    while True:
        state = graphql(url, BACKFILL_STATUS, id=backfill_id)["partitionBackfillOrError"]
        if state["status"] not in UNFINISHED:
            return state
        seen = [(run["id"], run["status"]) for run in state["runs"]]
        if seen != last_seen:
            last_change, last_seen = time.monotonic(), seen
        retried = {run["parentRunId"] for run in state["runs"]}
        finished = seen and not any(_still_moving(run, retried) for run in state["runs"])
        if finished and time.monotonic() - last_change > settle_s:
            return {**state, "stalled": True}
        if time.monotonic() > deadline:
            raise TimeoutError(
                f"backfill {backfill_id} still {state['status']} after {timeout_s} s"
            )
        time.sleep(1)


def _still_moving(run: dict, retried: set[str]) -> bool:
    """A run not ended, or failed and marked for a re-execution not launched yet: on a busy
    machine Dagster's retry daemon can take over a minute to launch it."""
    # Imported here: the schedules read the settings as they load.
    from nova_pipeline.schedules import WILL_RETRY

    marked = {"key": WILL_RETRY, "value": "true"} in run["tags"]
    return run["status"] not in FINISHED_RUN or (marked and run["id"] not in retried)


STOP_SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGHUP)


def _stop(signum: int, _frame: object) -> None:
    """Ctrl-C, SIGTERM (`kill`, a service manager) and SIGHUP (the terminal closed) all stop
    `make ui` the same way: its context managers stop what it started. Python's default for
    SIGTERM and SIGHUP ends the process at once, and `dagster dev` ran on with its daemon
    (seen here). Once: a closing terminal can send SIGHUP twice, and a second signal must
    not cut the stopping short (it ends in SIGKILL if `dagster dev` takes over a minute)."""
    for stop in STOP_SIGNALS:
        signal.signal(stop, signal.SIG_IGN)
    if signum == signal.SIGHUP:
        output_to_nowhere()
    raise KeyboardInterrupt


def _stop_on_signals() -> None:
    """A signal this process was started ignoring stays ignored (SIGHUP under `nohup`: the
    terminal may close), but SIGTERM: it is how `kill`, a test or a service manager stops
    `make ui`, whatever the shell that started it ignores."""
    for stop in STOP_SIGNALS:
        if stop == signal.SIGTERM or signal.getsignal(stop) is not signal.SIG_IGN:
            signal.signal(stop, _stop)


WATCH_S = 1.0
"""How often `make ui` looks at what it started."""


def _until_stopped(dev: DevServer, what: str, simulator: SimulatorChild | None = None) -> int:
    """Wait for a stop signal (`_stop`), or for `dagster dev` to end on its own: when its
    webserver or its daemon dies it stops the other and exits, and `make ui` went on
    holding the instance and the simulator under a banner naming a UI gone (seen here).
    Says which it was (`what` is what a signal stops), for the caller's context managers
    to stop the rest; returns the exit code.

    A `simulator` that ends is started again on its port, the one `dagster dev` was given:
    left dead, every run failed on refused connections with nothing saying why. If it
    cannot be started again, `make ui` stops, saying so."""
    try:
        while (code := dev.process.poll()) is None:
            ended = None if simulator is None else simulator.ended()
            if ended is not None and not _start_again(simulator, ended, what):
                return 1
            time.sleep(WATCH_S)
    except KeyboardInterrupt:
        print(f"\nstopping {what}", flush=True)
        return 0
    print(
        f"dagster dev ended on its own (exit code {code}): its log above says why",
        file=sys.stderr,
        flush=True,
    )
    return 1


def _start_again(simulator: SimulatorChild, ended: int, what: str) -> bool:
    """Start the simulator that ended (exit code `ended`) on its port; says how it went."""
    said = f"the simulator ended on its own (exit code {ended}) and"
    try:
        simulator.start()
    except (RuntimeError, OSError) as exc:
        print(
            f"{said} could not be started again ({exc}); stopping {what}",
            file=sys.stderr,
            flush=True,
        )
        return False
    print(
        f"{said} was started again at {simulator.api_url}; runs in flight retry their requests "
        "and go on, any that failed meanwhile can be re-executed",
        file=sys.stderr,
        flush=True,
    )
    return True


INSTANCE_LOCK = ".nova_ui.lock"
"""Held by the `make ui` or `make serve` running on an instance, with its PID."""


@contextmanager
def _instance(command: str) -> Iterator[Path | None]:
    """The instance the Makefile names, with the project's dagster.yaml (an operator's own
    kept), held by this process until it stops; None, said, when started by hand without
    DAGSTER_HOME (`dagster dev` would keep runs in a temporary folder), or while another
    `make ui` or `make serve` runs on it: Dagster supports one daemon per instance, and a
    second one's schedule, sensors and run queue would act beside the first's."""
    if not os.environ.get("DAGSTER_HOME"):
        print(f"DAGSTER_HOME is not set: start it with `{command}`, which sets it", file=sys.stderr)
        yield None
        return
    home = project_home(Path(os.environ["DAGSTER_HOME"]), keep=True)
    with open(home / INSTANCE_LOCK, "a+") as lock:
        if not _lock(lock):
            lock.seek(0)
            print(
                f"the instance {home} is in use by another `make ui` or `make serve` (pid "
                f"{lock.read().strip() or 'unknown'}): stop it first, or give this one an "
                "instance of its own (DAGSTER_HOME, or API_HOME for `make serve`)",
                file=sys.stderr,
            )
            yield None
            return
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        yield home


def _lock(lock: IO[str]) -> bool:
    """Take the lock without waiting; the system drops it when the process ends, however."""
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def main() -> int:
    """`make ui`: the simulator and `dagster dev`, in the instance the Makefile names."""
    from nova_pipeline.settings import SettingsError, load_settings

    with _instance("make ui") as home:
        if home is None:
            return 2
        port = _port()
        with simulator_child(SIMULATOR_ARGS) as simulator:
            # Read here as `dagster dev` will read them, its settings being this process's.
            os.environ["NOVA_API_URL"] = simulator.api_url
            os.environ.setdefault("NOVA_GROUPS", DEMO_GROUPS)
            try:
                warehouse = _warehouse_check(load_settings(), home)
            except SettingsError as exc:
                print(exc, file=sys.stderr)
                return 2
            with dagster_dev(os.environ, port=port) as dev:
                print(
                    f"\nDagster UI at {dev.url} (simulator at {simulator.api_url}); instance in "
                    f"{home}; Ctrl-C stops both.\n{warehouse}",
                    flush=True,
                )
                return _until_stopped(dev, "dagster dev and the simulator", simulator)


def serve() -> int:
    """`make serve`: the pipeline on the API NOVA_API_URL names, with no simulator.

    The Makefile gives it an instance and a warehouse of its own (.dagster_home_api,
    data_api), so the demo's simulated days never mix with real ones, in the warehouse or
    in the UI's record of materialized days. The settings are read first: a bad one stops
    here, naming itself, before `dagster dev` starts."""
    from nova_pipeline.settings import SettingsError, load_settings

    if not os.environ.get("NOVA_API_URL"):
        print(
            "NOVA_API_URL is not set: `make serve` runs against the API it names (README, "
            '"The real API"); `make ui` runs against the simulator',
            file=sys.stderr,
        )
        return 2
    try:
        settings = load_settings()
    except SettingsError as exc:
        print(exc, file=sys.stderr)
        return 2
    with _instance("make serve") as home:
        if home is None:
            return 2
        if (home / "dagster.yaml").read_bytes() != (REPO / "dagster.yaml").read_bytes():
            print(
                f"{home / 'dagster.yaml'} is kept as it is; it differs from the project's "
                f"{REPO / 'dagster.yaml'} (the DuckDB pool, the run queue): compare them",
                flush=True,
            )
        port = _port()
        warehouse = _warehouse_check(settings, home)
        with dagster_dev(os.environ, port=port) as dev:
            checked = _api_check(settings)
            print(
                f"\nDagster UI at {dev.url} for {settings.api_url}; instance in {home}, "
                f"warehouse {settings.duckdb_path.resolve()}; Ctrl-C stops it.\n{checked}\n"
                f"{warehouse}",
                flush=True,
            )
            return _until_stopped(dev, "dagster dev")


API_CHECK_ATTEMPTS = 2
"""Enough to ride out one dropped connection without holding `make serve` up for long."""


def _api_check(settings: Settings) -> str:
    """One request to the API as `dagster dev` comes up, so a refused token or a wrong URL
    is said at once, under the banner, not by the first run (the schedule's may be hours
    away). Said, not refused: the UI still shows past runs and the warehouse while the API
    is down."""
    from nova_pipeline.api.errors import NovaApiError
    from nova_pipeline.clock import latest_complete_day
    from nova_pipeline.resources import api_resource

    now = dt.datetime.now(dt.UTC)
    day = latest_complete_day(now, settings.timezone, settings.schedule_time)
    api = api_resource(settings, settings.api_token, page_size=1, max_attempts=API_CHECK_ATTEMPTS)
    try:
        with api.client() as client:
            client.fetch_page(day, day, "all", 0)
    except NovaApiError as exc:
        return (
            f"API check (one request, at most {API_CHECK_ATTEMPTS} attempts) failed; runs will "
            f"fail the same way until this is fixed: {exc}"
        )
    token = "its token accepted" if settings.api_token else "no token sent (NOVA_API_TOKEN)"
    return f"API check: {settings.api_url} answered a query of {day}, {token}."


def _warehouse_check(settings: Settings, home: Path) -> str:
    """Whether the warehouse holds every day the instance records as pulled, said under
    the banner. The UI's partitions, the freshness checks and the schedule's catch-up read
    the instance: after the file was deleted or NOVA_DUCKDB_PATH changed they would show
    those days as in, and the first pull, which warns of them, may be hours away. Read
    before `dagster dev` starts, while no run can want the file."""
    # Imported here: the assets read the settings as they load, which the callers check first.
    from nova_pipeline.assets.common import RAW_PAGES, days_not_in_warehouse, not_in_warehouse

    path = settings.duckdb_path.resolve()
    with _open_instance(home) as instance:
        recorded = instance.get_materialized_partitions(RAW_PAGES)
    if not recorded:
        return "Warehouse check: this instance records no day as pulled yet."
    try:
        with _warehouse(path) as con:
            missing = days_not_in_warehouse(con, recorded)
    except duckdb.Error as exc:
        return f"Warehouse check not made: {path} could not be read ({exc})."
    if missing:
        return f"Warehouse check: {not_in_warehouse(missing, str(path))}"
    days = "the one day" if len(recorded) == 1 else f"each of the {len(recorded)} days"
    return f"Warehouse check: {path} holds a pull of {days} this instance records as pulled."


class InstanceUnusable(RuntimeError):
    """The instance's dagster.yaml (an operator's own, kept) is no valid YAML or config."""


def _open_instance(home: Path) -> dg.DagsterInstance:
    """The instance in `home`. Its dagster.yaml is read here first: a broken one stops the
    start, naming the file and what is wrong, before `dagster dev` would fail on it."""
    try:
        return dg.DagsterInstance.from_config(str(home))
    except Exception as exc:  # the YAML parser's error or Dagster's config error
        raise InstanceUnusable(f"{home / 'dagster.yaml'} cannot be used: {exc}") from None


@contextmanager
def _warehouse(path: Path) -> Iterator[duckdb.DuckDBPyConnection | None]:
    """The warehouse file read-only; None when it does not exist, or holds no pages yet
    (a file of another use, or one whose first run died before creating its tables)."""
    if not path.exists():
        yield None
        return
    with duckdb.connect(str(path), read_only=True) as con:
        tables = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'call_sms_raw_pages'"
        ).fetchone()
        yield con if tables == (1,) else None


if __name__ == "__main__":
    _stop_on_signals()
    try:
        sys.exit(serve() if sys.argv[1:] == ["--api"] else main())
    except (PortUnusable, InstanceUnusable) as exc:
        print(exc, file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("stopped while starting; nothing left running", file=sys.stderr)
        sys.exit(130)
