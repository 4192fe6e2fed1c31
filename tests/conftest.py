"""Shared fixtures: the simulator over loopback HTTP is the test double for everything."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterator

import pytest

from nova_pipeline.simulator import FleetSpec, RunningSimulator, SimulatorConfig

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
