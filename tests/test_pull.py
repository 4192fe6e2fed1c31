"""Pulling days a few at a time: a pull interrupted, or one whose day fails, stops the days
in flight before their next request and leaves nothing landed."""

from __future__ import annotations

import datetime as dt
import logging

import pytest

from nova_pipeline.api import ClientConfig, Endpoint, NovaClient, RequestRejected
from nova_pipeline.landing import Landing
from nova_pipeline.pull import pull_days
from nova_pipeline.simulator.dataset import FleetSpec
from tests.conftest import DAY, NOW, served_items

FLEET = FleetSpec(seed=7, sims=500, groups=3, events_per_sim_day=20)
PAGE_SIZE = 5
NOT_SYNCED = NOW.date()
"""The provider has not synced this day yet: its pull is one empty page."""
BIG_DAYS = [DAY - dt.timedelta(days=n) for n in range(4)]


class Interrupting(logging.Handler):
    """Ctrl-C, or "Terminate" in the UI, landing as the run logs the first day pulled."""

    def emit(self, record: logging.LogRecord) -> None:
        raise KeyboardInterrupt


def clients(sim):
    return lambda: NovaClient(Endpoint(sim.api_url), ClientConfig(page_size=PAGE_SIZE))


def fetch_dirs(landing: Landing) -> list:
    return list(landing.root.glob("day=*/fetch=*"))


def test_an_interrupted_pull_stops_the_days_in_flight_and_leaves_nothing(start_simulator, tmp_path):
    sim = start_simulator(FLEET)
    pages_of_a_day = len(served_items(sim.api_url, DAY)) // PAGE_SIZE
    log = logging.Logger("pull", logging.INFO)
    log.addHandler(Interrupting())
    landing = Landing(tmp_path)
    requests_before = sim.simulator.requests

    with pytest.raises(KeyboardInterrupt):
        pull_days(clients(sim), landing, [NOT_SYNCED, *BIG_DAYS], ["all"], concurrency=4, log=log)

    # The not-synced day ended at once; the three big days in flight beside it stopped
    # after a few pages each, and the fourth never started. Before, the run waited for the
    # days in flight to be whole: three days' pages.
    assert sim.simulator.requests - requests_before < pages_of_a_day
    assert fetch_dirs(landing) == []


def test_a_day_that_fails_stops_the_others_and_its_error_is_the_one_raised(
    start_simulator, tmp_path
):
    """The not-synced day's pull of an unknown group is refused at once, while the big days
    submitted before it are still in their account-wide pull: they stop then, not once the
    first of them is whole, and that refusal is raised, not their stop."""
    sim = start_simulator(FLEET)
    pages_of_a_day = len(served_items(sim.api_url, DAY)) // PAGE_SIZE
    landing = Landing(tmp_path)
    requests_before = sim.simulator.requests

    days = [*BIG_DAYS[:3], NOT_SYNCED]
    with pytest.raises(RequestRejected, match="g_99"):
        pull_days(clients(sim), landing, days, ["all", "g_99"], concurrency=4)

    assert sim.simulator.requests - requests_before < pages_of_a_day
    assert fetch_dirs(landing) == []
