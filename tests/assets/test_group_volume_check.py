"""Each group's events against its days before: a group the provider emptied passes every
other check (its SIMs count as ungrouped, the sums reconcile), and is flagged here."""

from __future__ import annotations

import datetime as dt
import statistics

import duckdb

from nova_pipeline.checks import group_volume_usual
from tests.conftest import (
    FAULT_HISTORY,
    FAULTY_DAY,
    served_items,
    store_groups,
    table_rows,
    warning_of_a_fault,
)

GROUPS = {1: "Trackers", 2: "Vans", 3: "Meters"}


def test_a_group_pull_that_comes_back_empty_is_flagged_though_the_sums_reconcile(
    make_pipeline, start_simulator
):
    pipeline = make_pipeline(groups=",".join(f"{g}={name}" for g, name in GROUPS.items()))
    check = warning_of_a_fault(pipeline, start_simulator, "empty_group", "group_volume_usual")

    # What the check should say, from the API's own pulls: a group is judged once the
    # median of its events on the days before is 100 or more.
    def events(group: int, on: dt.date) -> int:
        return len(served_items(pipeline.sim.api_url, on, f"g_{group}"))

    usual = {
        f"{name} ({g})": statistics.median(events(g, d) for d in FAULT_HISTORY)
        for g, name in GROUPS.items()
    }
    expected = [
        [FAULTY_DAY.isoformat(), group, "0", f"{events:.1f}", "3", "0.0", "-"]
        for group, events in sorted(usual.items())
        if events >= 100
    ]
    assert expected, "the small fleet has a group large enough to judge"
    assert table_rows(check.metadata["detail"].value) == expected


def test_which_groups_are_judged(tmp_path):
    d = [dt.date(2026, 10, 1) + dt.timedelta(days=n) for n in range(40)]
    usual = {1: 400, 2: 300, 3: 60, None: 200}  # Meters: too few a day to judge
    stored = {day: dict(usual) for day in d[:4]}
    # Vans emptied at the provider: its SIMs count as ungrouped (not judged: they change
    # with NOVA_GROUPS); Meters halve by chance.
    stored[d[4]] = {1: 400, 2: 0, 3: 25, None: 500}
    # Vans no longer pulled (taken out of NOVA_GROUPS): no row, so not judged.
    stored[d[5]] = {1: 400, 3: 60, None: 500}
    stored[d[6]] = {1: 900, 3: 60, None: 500}
    # Later, one group alone configured: judged as any group.
    stored |= {day: {1: 200, None: 200} for day in d[30:34]} | {d[34]: {1: 0, None: 400}}
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        store_groups(con, stored, GROUPS)
        judged = group_volume_usual(con, (d[0], d[34])).result()

    assert not judged.passed and judged.severity.value == "WARN"
    assert table_rows(judged.metadata["detail"].value) == [
        [str(d[4]), "Vans (2)", "0", "300.0", "4", "0.0", "-"],
        [str(d[6]), "Trackers (1)", "900", "400.0", "6", "2.25", "-"],
        [str(d[34]), "Trackers (1)", "0", "200.0", "4", "0.0", "-"],
    ]


def test_a_group_renamed_in_nova_groups_keeps_its_days(tmp_path):
    d = [dt.date(2026, 10, 1) + dt.timedelta(days=n) for n in range(6)]
    with duckdb.connect(str(tmp_path / "w.duckdb")) as con:
        store_groups(con, {day: {2: 300, None: 200} for day in d[:4]}, {2: "Vans"})
        # Renamed on the fifth day, and the next its events fall to a tenth.
        store_groups(con, {d[4]: {2: 300, None: 200}, d[5]: {2: 30, None: 200}}, {2: "Fleet vans"})
        judged = group_volume_usual(con, (d[4], d[5])).result()

    assert table_rows(judged.metadata["detail"].value) == [
        [str(d[5]), "Fleet vans (2)", "30", "300.0", "5", "0.1", "-"],
    ]
