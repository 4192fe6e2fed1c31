"""Shared fixtures: the simulator over loopback HTTP is the test double for everything."""

from __future__ import annotations

import datetime as dt
import json
import os
import resource
import ssl
import subprocess
import sys
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager, contextmanager
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import dagster as dg
import httpx
import pytest
import zstandard

from nova_pipeline import ignore_chosen_warnings
from nova_pipeline.simulator import FleetSpec, RunningSimulator, SimulatorConfig
from nova_pipeline.warehouse import TABLES, ensure_schema

ALMATY = dt.timezone(dt.timedelta(hours=5))
NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=ALMATY)
"""The provider's clock in tests: the sync of 2026-11-20 has run, so 11-19 is complete."""
DAY = dt.date(2026, 11, 18)
SMALL_FLEET = FleetSpec(seed=7, sims=40, groups=3, events_per_sim_day=12)


def pytest_collectstart() -> None:
    """pytest resets the warning filters for collecting (which imports the definitions)
    and for each test; the package's own filters only silence the features chosen, so any
    other one fails the tests (pyproject.toml)."""
    ignore_chosen_warnings()


@pytest.fixture(autouse=True)
def _chosen_dagster_features() -> None:
    ignore_chosen_warnings()


@pytest.fixture
def start_simulator() -> Iterator[Callable[..., RunningSimulator]]:
    """Start simulators on free loopback ports; all are stopped at teardown."""
    running: list[RunningSimulator] = []

    def start(fleet: FleetSpec = SMALL_FLEET, **config: object) -> RunningSimulator:
        config.setdefault("now", NOW)
        sim = RunningSimulator(SimulatorConfig(fleet=fleet, **config)).__enter__()
        running.append(sim)
        return sim

    yield start
    for sim in running:
        sim.__exit__(None, None, None)


@pytest.fixture
def simulator(start_simulator: Callable[..., RunningSimulator]) -> RunningSimulator:
    return start_simulator()


class Pipeline:
    """The real asset graph, run through Dagster against a simulator and a temp DuckDB."""

    def __init__(self, sim: RunningSimulator, root: Path, groups: str, **api: object) -> None:
        from nova_pipeline.resources import (
            FleetGroupsResource,
            LandingZoneResource,
            NovaApiResource,
            WarehouseResource,
        )

        self.sim = sim
        self.root = root
        api = {"page_size": 100, "backoff_base_s": 0.01, **api}
        self.resources = {
            "nova_api": NovaApiResource(api_url=sim.api_url, **api),
            "fleet_groups": FleetGroupsResource(groups=groups),
            "landing_zone": LandingZoneResource(root=str(root / "landing")),
            "duckdb": WarehouseResource(database=str(root / "nova.duckdb")),
        }
        self.instance = dg.DagsterInstance.ephemeral(tempdir=str(root / "dagster"))

    def run(
        self,
        first: str,
        last: str | None = None,
        selection=None,
        raise_on_error=True,
        tags: dict[str, str] | None = None,
    ):
        from nova_pipeline.checks import ASSET_CHECKS
        from nova_pipeline.definitions import ASSETS

        tags = {
            **(tags or {}),
            "dagster/asset_partition_range_start": first,
            "dagster/asset_partition_range_end": last or first,
        }
        return dg.materialize(
            [*ASSETS, *ASSET_CHECKS],
            resources=self.resources,
            tags=tags,
            instance=self.instance,
            selection=selection,
            raise_on_error=raise_on_error,
        )

    def reconfigure(self, name: str, **changes: object) -> None:
        """Replace a resource by one with `changes`. A `model_copy` of it would not do:
        Dagster rebuilds a resource from the arguments it was constructed with."""
        resource = self.resources[name]
        self.resources[name] = type(resource)(**{**resource.model_dump(), **changes})

    def sql(self, query: str, *params: object) -> list[tuple]:
        with self.resources["duckdb"].get_connection() as con:
            return con.execute(query, list(params)).fetchall()

    def landed(self, landing_file: str) -> Path:
        """Where a file the raw index names is (the index names it within the landing zone)."""
        return self.resources["landing_zone"].landing().path(landing_file)


@contextmanager
def loopback_api(
    handler: type[BaseHTTPRequestHandler], tls: ssl.SSLContext | None = None
) -> Iterator[str]:
    """A loopback HTTP(S) server (not the simulator) answering with `handler`: the API's URL."""
    server = HTTPServer(("127.0.0.1", 0), handler)
    if tls:
        server.socket = tls.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield f"http{'s' if tls else ''}://127.0.0.1:{server.server_port}/api"
    finally:
        server.shutdown()
        server.server_close()


def answering_json(answer: Callable[[dict], bytes]) -> AbstractContextManager[str]:
    """A loopback API (not the simulator) answering each POST with 200 and `answer` of its
    JSON body, for pages made by hand: the API's URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            body = answer(json.loads(self.rfile.read(int(self.headers["Content-Length"]))))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return loopback_api(Handler)


@contextmanager
def warehouse_held(path: str | Path, read_only: bool = True) -> Iterator[subprocess.Popen]:
    """Another process holding the DuckDB file (an analyst's session is read-only) until
    the end of the block, or until its stdin is closed."""
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            f"import duckdb, sys; c = duckdb.connect({str(path)!r}, read_only={read_only}); "
            "print('held', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout.readline().strip() == "held"
        yield holder
    finally:
        holder.stdin.close()
        holder.wait(timeout=30)


def check_evaluation(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    """The evaluation of the check `name` in a run's result."""
    return next(e for e in result.get_asset_check_evaluations() if e.check_name == name)


FAULT_HISTORY = [dt.date(2026, 11, d) for d in (16, 17, 18)]
FAULTY_DAY = dt.date(2026, 11, 19)


def warning_of_a_fault(
    pipeline: Pipeline, start_simulator: Callable[..., RunningSimulator], fault: str, check: str
) -> dg.AssetCheckEvaluation:
    """The evaluation of `check` on FAULTY_DAY pulled from a simulator with `fault` on every
    request, after FAULT_HISTORY pulled clean: a WARN that stops nothing, from that check
    alone (the sums reconcile). The day pulled clean again passes."""
    clean = pipeline.sim.api_url
    assert check_evaluation(
        pipeline.run(FAULT_HISTORY[0].isoformat(), FAULT_HISTORY[-1].isoformat()), check
    ).passed
    pipeline.reconfigure("nova_api", api_url=start_simulator(faults={fault: 1.0}).api_url)
    result = pipeline.run(FAULTY_DAY.isoformat())
    assert result.success, "a warning does not stop the run"
    warning = check_evaluation(result, check)
    assert not warning.passed and warning.severity.value == "WARN"
    assert warning.metadata["failing_days"].value == [FAULTY_DAY.isoformat()]
    others = [e for e in result.get_asset_check_evaluations() if e.check_name != check]
    assert all(e.passed for e in others), "the sums reconcile: only this check sees it"
    pipeline.reconfigure("nova_api", api_url=clean)
    assert check_evaluation(pipeline.run(FAULTY_DAY.isoformat()), check).passed
    return warning


def day_metadata(result: dg.ExecuteInProcessResult, asset: str) -> dict[str, dict[str, object]]:
    """Each day's materialization of `asset` in a run: {partition: {key: value}}."""
    days = {}
    for event in result.get_asset_materialization_events():
        materialization = event.event_specific_data.materialization
        if materialization.asset_key == dg.AssetKey(asset):
            days[materialization.partition] = {
                key: value.value for key, value in materialization.metadata.items()
            }
    return days


def table_rows(markdown: str) -> list[list[str]]:
    """The cells of a markdown table in metadata, below its header."""
    return [[c.strip() for c in line.strip("|").split("|")] for line in markdown.splitlines()[2:]]


def index_page(con, day: dt.date, item_count: int) -> None:
    """One page of the `all` pull in the raw index, for a check run on a hand-made warehouse."""
    con.execute(
        "INSERT INTO call_sms_raw_pages (day, selector, page, status, attempts, item_count, "
        "body_bytes, fetched_at, request, landing_file, line) "
        "VALUES (?, 'all', 0, 200, 1, ?, 1000, now(), '', 'all.ndjson.zst', 0)",
        [day, item_count],
    )


def store_events(con, stored: dict[dt.date, list[tuple[int, str, str]]]) -> None:
    """Each day's events, given as (how many, of which type, euro each)."""
    ensure_schema(con)
    sid = 0
    for day, groups in stored.items():
        for events, event_type, cost in groups:
            con.execute(
                "INSERT INTO call_sms_events (sid, occurred_at, day, type, cost_eur, sim_id, "
                "out_of_window, source_page) "
                "SELECT $sid + range, now(), $day, $type, $cost, 1, false, 0 "
                "FROM range($events)",
                {"sid": sid, "day": day, "type": event_type, "cost": cost, "events": events},
            )
            sid += events


def store_groups(con, stored: dict[dt.date, dict[int | None, int]], names: dict[int, str]) -> None:
    """Each day's rows of group_daily_cost, given as {group_id (None: ungrouped): events},
    each group named as `names` says."""
    ensure_schema(con)
    columns = [c.name for c in TABLES["group_daily_cost"]]
    for day, groups in stored.items():
        for group, events in groups.items():
            row = dict.fromkeys(columns, 0) | {
                "day": day,
                "group_id": group,
                "group_name": names.get(group, "ungrouped"),
                "events": events,
            }
            con.execute(
                f"INSERT INTO group_daily_cost ({', '.join(columns)}) "
                f"VALUES ({', '.join('?' * len(columns))})",
                [row[c] for c in columns],
            )


def run_logs(pipeline: Pipeline, result) -> list[str]:
    """The messages a run logged, as its page in the UI shows them."""
    return [e.user_message for e in pipeline.instance.all_logs(result.run_id)]


def served_items(api_url: str, day: dt.date, selector: str = "all", token: str = "") -> list[dict]:
    """What the API serves for a day, read with plain httpx: the independent reference."""
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    items, page = [], 0
    text = day.strftime("%d-%m-%Y")
    while True:
        body = {
            "filter": {"start": text, "end": text},
            "select": [selector],
            "page": page,
            "size": 1000,
        }
        got = httpx.post(
            f"{api_url}/report/call_sms", json=body, headers=headers, timeout=30
        ).json()
        if not got["result"]["items"]:
            return items
        items += got["result"]["items"]
        page += 1


def bad_item_reason(kind: str, item: dict) -> str:
    """The reason the rules give an item of the simulator's bad kind `kind` (`bad_item`)."""
    return {
        "sid_not_int": "sid: expected an integer, got varchar",
        "cost_not_number": "session_cost: expected a number, got varchar",
        "date_not_int": "date: expected a Unix timestamp, got varchar",
        "missing_cost": "session_cost: missing",
        "missing_sid": "sid: missing",
        "unknown_type": "type: unknown value mms",
        "negative_cost": "session_cost: negative (-0.25)",
        "sid_beyond_int64": f"sid: {item.get('sid')} is beyond a 64-bit integer",
        "date_in_milliseconds": f"date: {item.get('date')} is not a time in the years 1-9999",
        "duplicate_key": "session_cost: sent more than once",
        "cost_not_finite": "session_cost: expected a number, got NaN",
    }[kind]


def landed_lines(path: str | Path) -> list[bytes]:
    """The pages of a landing file, one NDJSON line each, after checking it is zstd."""
    with open(path, "rb") as raw:
        assert raw.read(4) == b"\x28\xb5\x2f\xfd", f"{path} is not a zstd file"
    with zstandard.open(path, "rb") as landed:
        return landed.read().splitlines()


def independent_costs(
    api_url: str, day: dt.date = DAY
) -> tuple[dict[int, Decimal], dict[int, int]]:
    """Euro and event count per SIM, summed as Decimal over the items the API serves."""
    cost: dict[int, Decimal] = defaultdict(Decimal)
    count: dict[int, int] = defaultdict(int)
    for item in served_items(api_url, day):
        cost[item["id"]] += Decimal(str(item["session_cost"]))
        count[item["id"]] += 1
    return dict(cost), dict(count)


def materialize_command(day: dt.date = DAY) -> list[str]:
    """The documented CLI: `dagster asset materialize --select '*' --partition <day>`."""
    dagster = Path(sys.executable).with_name("dagster")
    return [
        str(dagster),
        "asset",
        "materialize",
        "-m",
        "nova_pipeline.definitions",
        "--select",
        "*",
        "--partition",
        day.isoformat(),
    ]


def dagster_materialize(env: dict[str, str], day: dt.date = DAY) -> subprocess.CompletedProcess:
    """Every asset of `day` through the documented CLI, to its end."""
    return subprocess.run(
        materialize_command(day), env=env, capture_output=True, text=True, timeout=300
    )


@contextmanager
def dagster_dev_stack(tmp_path: Path, sim_args: list[str], **env: str):
    """Simulator + `dagster dev` on free loopback ports with a temp DAGSTER_HOME holding the
    repo's dagster.yaml; yields (webserver URL, API URL, DuckDB path)."""
    from nova_pipeline.simulator.process import free_port, simulator_process
    from nova_pipeline.ui import dagster_dev, project_home

    home = project_home(tmp_path / "dagster_home")
    with simulator_process(sim_args) as api_url:
        full_env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "NOVA_API_URL": api_url,
            "NOVA_DATA_DIR": str(tmp_path / "data"),
            **env,
        }
        with dagster_dev(full_env, port=free_port()) as dev:
            yield dev.url, api_url, tmp_path / "data" / "nova.duckdb"


@pytest.fixture
def make_pipeline(start_simulator, tmp_path):
    """Build pipelines over fresh simulators; each gets its own temp warehouse."""
    count = 0

    def make(groups: str = "1=Trackers,2=Vans,3=Meters", sim=None, **kw) -> Pipeline:
        nonlocal count
        count += 1
        api = {
            k: kw.pop(k)
            for k in list(kw)
            if k
            in (
                "page_size",
                "fetch_concurrency",
                "read_timeout_s",
                "max_attempts",
                "api_charset",
                "api_lone_surrogates",
            )
        }
        return Pipeline(sim or start_simulator(**kw), tmp_path / f"p{count}", groups, **api)

    return make


def descendants(pid: int) -> dict[int, str]:
    """The processes `pid` started, and theirs, with their command lines."""
    found = {}
    for child in map(int, Path(f"/proc/{pid}/task/{pid}/children").read_text().split()):
        found[child] = Path(f"/proc/{child}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        found |= descendants(child)
    return found


def running(pid: int) -> bool:
    """The process `pid` exists and has not ended (a zombie has ended, not yet reaped)."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def wait_until_a_page_lands(data_dir: Path, ended: Callable[[], str | None]) -> None:
    """Until a pull is writing its first landing file: a stop sent then lands inside the
    pull. `ended` says why the run ended before that (the test then fails with it), or
    None while it goes on."""
    deadline = time.monotonic() + 300
    while not list((data_dir / "landing").glob("call_sms/day=*/fetch=*/*.tmp")):
        why = ended()
        assert why is None, why
        assert time.monotonic() < deadline, "no page landed"
        time.sleep(0.05)


@contextmanager
def file_size_limit(limit: int) -> Iterator[None]:
    """Writes past `limit` bytes of a file fail, as on a full disk (EFBIG, not ENOSPC):
    a full disk a test can make without mounting one."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))
