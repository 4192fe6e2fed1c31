"""Shared fixtures: the simulator over loopback HTTP is the test double for everything."""

from __future__ import annotations

import datetime as dt
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import dagster as dg
import httpx
import pytest

from nova_pipeline.simulator import FleetSpec, RunningSimulator, SimulatorConfig

warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)

ALMATY = dt.timezone(dt.timedelta(hours=5))
NOW = dt.datetime(2026, 11, 20, 12, 0, tzinfo=ALMATY)
"""The provider's clock in tests: the sync of 2026-11-20 has run, so 11-19 is complete."""
DAY = dt.date(2026, 11, 18)
SMALL_FLEET = FleetSpec(seed=7, sims=40, groups=3, events_per_sim_day=12)


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
        self.instance = dg.DagsterInstance.ephemeral()

    def run(self, first: str, last: str | None = None, selection=None, raise_on_error=True):
        from nova_pipeline.checks import ASSET_CHECKS
        from nova_pipeline.definitions import ASSETS

        tags = {
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

    def sql(self, query: str, *params: object) -> list[tuple]:
        with self.resources["duckdb"].get_connection() as con:
            return con.execute(query, list(params)).fetchall()


def served_items(sim: RunningSimulator, day: dt.date, selector: str = "all") -> list[dict]:
    """What the API serves for a day, read with plain httpx: the independent reference."""
    items, page = [], 0
    text = day.strftime("%d-%m-%Y")
    while True:
        body = {
            "filter": {"start": text, "end": text},
            "select": [selector],
            "page": page,
            "size": 1000,
        }
        got = httpx.post(f"{sim.api_url}/report/call_sms", json=body, timeout=30).json()
        if not got["result"]["items"]:
            return items
        items += got["result"]["items"]
        page += 1


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
            if k in ("page_size", "fetch_concurrency", "read_timeout_s", "max_attempts")
        }
        return Pipeline(sim or start_simulator(**kw), tmp_path / f"p{count}", groups, **api)

    return make
