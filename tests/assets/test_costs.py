"""Per-SIM and per-group costs equal, exactly, independent sums over what the API served."""

from __future__ import annotations

import datetime as dt
import re
from collections import defaultdict
from contextlib import AbstractContextManager
from decimal import Decimal
from pathlib import Path
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import dagster as dg
import duckdb

from nova_pipeline.assets.common import euro
from nova_pipeline.partitions import DAILY
from nova_pipeline.transforms.costs import SIM_DAILY_COST_SQL, TOP_SIMS_SQL
from nova_pipeline.warehouse import ensure_schema, replace_days
from nova_pipeline.warehouse.schema import TABLES
from tests.conftest import (
    DAY,
    Pipeline,
    answering_json,
    independent_costs,
    run_logs,
    served_items,
    table_rows,
)

DAY_KEY = DAY.isoformat()
README_QUERY = re.search(
    r'con\.sql\("""(.*?)"""\)', (Path(__file__).parents[2] / "README.md").read_text(), re.S
).group(1)
"""The query of the README's "Reading the numbers"."""


def test_sim_and_group_costs_equal_independent_sums_to_the_cent(make_pipeline):
    pipeline = make_pipeline()
    result = pipeline.run(DAY_KEY)
    assert result.success
    expected_cost, expected_count = independent_costs(pipeline.sim.api_url)

    rows = pipeline.sql("SELECT sim_id, events, cost_eur FROM sim_daily_cost WHERE day = ?", DAY)
    assert {r[0]: r[2] for r in rows} == expected_cost
    assert {r[0]: r[1] for r in rows} == expected_count

    sims = pipeline.sim.simulator.dataset.sims
    group_of = {s.id: s.group_id for s in sims}
    expected_groups: dict[int | None, Decimal] = defaultdict(Decimal)
    for sim_id, cost in expected_cost.items():
        expected_groups[group_of[sim_id]] += cost
    groups = pipeline.sql(
        "SELECT group_id, group_name, cost_eur, active_sims FROM group_daily_cost WHERE day = ?",
        DAY,
    )
    assert {g[0]: g[2] for g in groups} == dict(expected_groups)
    assert {g[0]: g[1] for g in groups} == {
        1: "Trackers",
        2: "Vans",
        3: "Meters",
        None: "ungrouped",
    }
    assert sum(g[2] for g in groups) == sum(expected_cost.values())
    assert {g[0]: g[3] for g in groups} == {
        gid: sum(1 for s in expected_cost if group_of[s] == gid) for gid in expected_groups
    }


def test_per_type_columns_add_up_and_match_the_items(make_pipeline):
    pipeline = make_pipeline()
    pipeline.run(DAY_KEY)
    by_type: dict[str, Decimal] = defaultdict(Decimal)
    for item in served_items(pipeline.sim.api_url, DAY):
        by_type[item["type"]] += Decimal(str(item["session_cost"]))
    ((call, in_sms, out_sms, ussd, total),) = pipeline.sql(
        "SELECT sum(call_cost_eur), sum(in_sms_cost_eur), sum(out_sms_cost_eur), "
        "sum(ussd_cost_eur), sum(cost_eur) FROM sim_daily_cost WHERE day = ?",
        DAY,
    )
    assert (call, in_sms, out_sms, ussd) == (
        by_type["call"],
        by_type["in_sms"],
        by_type["out_sms"],
        by_type["ussd"],
    )
    assert total == call + in_sms + out_sms + ussd


def test_cost_columns_are_decimal(make_pipeline):
    pipeline = make_pipeline()
    pipeline.run(DAY_KEY)
    types = pipeline.sql(
        "SELECT table_name, column_name, data_type FROM information_schema.columns "
        "WHERE column_name LIKE '%cost_eur'"
    )
    assert len(types) == 1 + 2 * (4 + 1)  # events; per type + total in both rollups
    assert {t[2] for t in types} == {"DECIMAL(18,6)"}


def test_without_groups_every_sim_is_ungrouped(make_pipeline):
    pipeline = make_pipeline(groups="")
    pipeline.run(DAY_KEY)
    expected_cost, _ = independent_costs(pipeline.sim.api_url)
    assert pipeline.sql("SELECT group_id, group_name, cost_eur FROM group_daily_cost") == [
        (None, "ungrouped", sum(expected_cost.values()))
    ]
    assert pipeline.sql("SELECT count(*) FROM sim_group_membership") == [(0,)]


def test_an_idle_group_gets_a_row_of_zeros(start_simulator, make_pipeline):
    from nova_pipeline.simulator import FleetSpec

    sim = start_simulator(fleet=FleetSpec(seed=7, sims=5, groups=12, events_per_sim_day=12))
    empty_group = next(g for g in range(1, 13) if not sim.simulator.dataset.sim_ids_in_group(g))
    pipeline = make_pipeline(groups=f"{empty_group}=Spare", sim=sim)
    pipeline.run(DAY_KEY)
    assert pipeline.sql(
        "SELECT active_sims, events, cost_eur FROM group_daily_cost WHERE group_id = ?", empty_group
    ) == [(0, 0, Decimal(0))]
    assert pipeline.sql(
        "SELECT page, item_count FROM call_sms_raw_pages WHERE selector = ?", f"g_{empty_group}"
    ) == [(0, 0)], "the pull's empty page records that the group was pulled"


def costs_with_group_1_alone(pipeline) -> tuple[dict[int | None, Decimal], set]:
    """The day's cost of group 1 and of every other SIM as 'ungrouped', summed from what
    the API served; and the simulator's groups of the day's SIMs."""
    expected_cost, _ = independent_costs(pipeline.sim.api_url)
    group_of = {s.id: s.group_id for s in pipeline.sim.simulator.dataset.sims}
    expected: dict[int | None, Decimal] = defaultdict(Decimal)
    for sim_id, cost in expected_cost.items():
        expected[1 if group_of[sim_id] == 1 else None] += cost
    return dict(expected), {group_of[s] for s in expected_cost}


def test_a_day_puts_a_sim_in_the_groups_that_returned_it_that_day(make_pipeline):
    """NOVA_GROUPS narrowed to one group after a day was stored: the next day, the SIMs of
    the dropped groups are 'ungrouped', not lost because a group held them the day before."""
    pipeline = make_pipeline()
    pipeline.run((DAY - dt.timedelta(days=1)).isoformat())
    pipeline.reconfigure("fleet_groups", groups="1=Trackers")
    pipeline.run(DAY_KEY)
    expected, groups = costs_with_group_1_alone(pipeline)
    assert len(groups - {1, None}) >= 2, "SIMs of dropped groups"
    assert dict(
        pipeline.sql("SELECT group_id, cost_eur FROM group_daily_cost WHERE day = ?", DAY)
    ) == dict(expected)


def test_group_costs_re_run_alone_after_groups_were_narrowed_keep_every_euro(make_pipeline):
    """A day stored with three groups, its group costs re-run alone with NOVA_GROUPS
    narrowed to one: its membership still names the dropped groups, whose SIMs are now in
    no configured group, so they are 'ungrouped' and the day still adds up. A SIM also in
    a dropped group counts once, in the group kept."""
    pipeline = make_pipeline()
    pipeline.run(DAY_KEY)
    total = pipeline.sql("SELECT sum(cost_eur) FROM sim_daily_cost WHERE day = ?", DAY)
    pipeline.sql(
        "INSERT INTO sim_group_membership SELECT day, 2, 'Vans', sim_id FROM sim_group_membership "
        "WHERE group_id = 1 ORDER BY sim_id LIMIT 1"
    )
    pipeline.reconfigure("fleet_groups", groups="1=Trackers")
    result = pipeline.run(DAY_KEY, selection=["group_daily_cost"])
    checks = {e.check_name: e for e in result.get_asset_check_evaluations()}
    assert set(checks) == {"group_cost_reconciles", "group_volume_usual"}
    assert all(e.passed for e in checks.values())
    assert checks["group_cost_reconciles"].description == f"passed for {DAY_KEY}"
    expected, _ = costs_with_group_1_alone(pipeline)
    assert dict(
        pipeline.sql("SELECT group_id, cost_eur FROM group_daily_cost WHERE day = ?", DAY)
    ) == dict(expected)
    assert pipeline.sql("SELECT sum(cost_eur) FROM group_daily_cost WHERE day = ?", DAY) == total
    assert pipeline.sql("SELECT DISTINCT group_id FROM sim_group_membership ORDER BY 1") == [
        (1,),
        (2,),
        (3,),
    ], "membership keeps what each pull returned that day"


def test_a_group_renamed_in_nova_groups_takes_its_new_name_where_its_costs_are_re_run(
    make_pipeline,
):
    """Group costs name each group as NOVA_GROUPS does when they run: a day stored before a
    rename keeps the old name until its group costs are re-run, then has the new one, its
    figures the same (the group's usual-range check knows it by its id either way)."""
    pipeline = make_pipeline()
    pipeline.run(DAY_KEY)
    rows = "SELECT group_id, group_name, events, cost_eur FROM group_daily_cost WHERE day = ? "
    before = pipeline.sql(rows + "ORDER BY group_id NULLS LAST", DAY)
    assert [name for _, name, _, _ in before] == ["Trackers", "Vans", "Meters", "ungrouped"]
    pipeline.reconfigure("fleet_groups", groups="1=Trackers,2=Fleet vans,3=Meters")
    result = pipeline.run(DAY_KEY, selection=["group_daily_cost"])
    assert all(e.passed for e in result.get_asset_check_evaluations())
    assert pipeline.sql(rows + "ORDER BY group_id NULLS LAST", DAY) == [
        (g, "Fleet vans" if g == 2 else name, events, cost) for g, name, events, cost in before
    ]


def test_the_readme_query_keeps_a_renamed_group_in_one_row_a_month(make_pipeline):
    """The README's query sums each group's month by its id: the days stored before a
    rename and the day re-run after it make one row, under the new name."""
    pipeline = make_pipeline()
    pipeline.run("2026-11-18", "2026-11-19")
    euro_by_group = dict(
        pipeline.sql("SELECT group_id, sum(cost_eur) FROM group_daily_cost GROUP BY 1")
    )
    pipeline.reconfigure("fleet_groups", groups="1=Trackers,2=Fleet vans,3=Meters")
    pipeline.run("2026-11-19", selection=["group_daily_cost"])
    assert pipeline.sql(
        "SELECT day, group_name FROM group_daily_cost WHERE group_id = 2 ORDER BY day"
    ) == [(dt.date(2026, 11, 18), "Vans"), (dt.date(2026, 11, 19), "Fleet vans")]

    names = {1: "Trackers", 2: "Fleet vans", 3: "Meters", None: "ungrouped"}
    assert pipeline.sql(README_QUERY) == [
        ("2026-11", group, name, euro_by_group[group]) for group, name in names.items()
    ]


def test_a_group_added_since_the_day_was_pulled_has_no_row_until_the_day_is_pulled_again(
    make_pipeline,
):
    """Membership and group costs re-run alone after a group was added to NOVA_GROUPS: the
    day holds no pull of it, so it has no member and no row (not a row of zeros that would
    say it was idle), and its SIMs stay 'ungrouped'; each asset says so. Pulling the day
    again gives it its cost."""
    pipeline = make_pipeline(groups="1=Trackers")
    pipeline.run(DAY_KEY)
    pipeline.reconfigure("fleet_groups", groups="1=Trackers,2=Vans")
    alone = pipeline.run(DAY_KEY, selection=["sim_group_membership", "group_daily_cost"])
    expected, _ = costs_with_group_1_alone(pipeline)
    assert dict(
        pipeline.sql("SELECT group_id, cost_eur FROM group_daily_cost WHERE day = ?", DAY)
    ) == dict(expected)
    assert pipeline.sql("SELECT DISTINCT group_id FROM sim_group_membership") == [(1,)]
    for asset in ("sim_group_membership", "group_daily_cost"):
        [materialization] = alone.asset_materializations_for_node(asset)
        assert materialization.metadata["groups_not_pulled"].value == {"2": [DAY_KEY]}, asset
    unpulled = f"group 2 (Vans) has no pull on {DAY_KEY} (pulled before it was configured)"
    remedy = "Materialize every asset for these days to pull it."
    assert [m for m in run_logs(pipeline, alone) if "has no pull on" in m] == [
        f"{unpulled}: none of its SIMs is listed there. {remedy}",
        f"{unpulled}: no row there, and its SIMs count as 'ungrouped'. {remedy}",
    ]

    again = pipeline.run(DAY_KEY)
    assert not [m for m in run_logs(pipeline, again) if "has no pull on" in m]
    expected_cost, _ = independent_costs(pipeline.sim.api_url)
    group_of = {s.id: s.group_id for s in pipeline.sim.simulator.dataset.sims}
    vans = sum(cost for sim_id, cost in expected_cost.items() if group_of[sim_id] == 2)
    assert vans > 0
    assert pipeline.sql("SELECT cost_eur FROM group_daily_cost WHERE group_id = 2") == [(vans,)]


def test_a_day_indexed_before_empty_pages_were_kept_gives_every_configured_group_a_row(
    make_pipeline,
):
    """A warehouse whose raw index kept only pages with items cannot tell an idle group
    from one not pulled: every configured group gets a row, as it did when it was stored."""
    pipeline = make_pipeline(groups="1=Trackers")
    pipeline.run(DAY_KEY)
    pipeline.sql("DELETE FROM call_sms_raw_pages WHERE item_count = 0")
    pipeline.reconfigure("fleet_groups", groups="1=Trackers,2=Vans")
    result = pipeline.run(DAY_KEY, selection=["group_daily_cost"])
    expected, _ = costs_with_group_1_alone(pipeline)
    assert dict(
        pipeline.sql("SELECT group_id, cost_eur FROM group_daily_cost WHERE day = ?", DAY)
    ) == {**expected, 2: Decimal(0)}
    assert not [m for m in run_logs(pipeline, result) if "has no pull on" in m]


def per_day_costs(result) -> list[str]:
    """The day, its cost and its previous cost, as the events' per-day table shows them."""
    meta = result.asset_materializations_for_node("call_sms_events")[0].metadata
    [row] = table_rows(meta["per_day"].value)
    return [row[0], row[2], row[3]]


def test_late_and_rerated_records_move_the_day_to_the_new_truth(make_pipeline):
    pipeline = make_pipeline()
    pipeline.sim.simulator.set_now(dt.datetime(2026, 11, 19, 5, tzinfo=dt.UTC))
    first = pipeline.run(DAY_KEY)
    first_cost, first_count = independent_costs(pipeline.sim.api_url)
    assert pipeline.sql("SELECT sum(cost_eur) FROM sim_daily_cost") == [(sum(first_cost.values()),)]
    assert per_day_costs(first) == [str(DAY), euro(sum(first_cost.values())), "—"]

    pipeline.sim.simulator.set_now(dt.datetime(2026, 11, 22, 5, tzinfo=dt.UTC))
    result = pipeline.run(DAY_KEY)
    final_cost, final_count = independent_costs(pipeline.sim.api_url)
    assert sum(final_count.values()) > sum(first_count.values())
    assert final_cost != first_cost
    rows = pipeline.sql("SELECT sim_id, cost_eur FROM sim_daily_cost WHERE day = ?", DAY)
    assert dict(rows) == final_cost
    changed = {s for s in final_cost if final_cost[s] != first_cost.get(s)}
    meta = result.asset_materializations_for_node("sim_daily_cost")[0].metadata
    assert meta["sims_changed"].value == len(changed)
    assert Decimal(meta["previous_cost_eur_exact"].value) == sum(first_cost.values())
    assert Decimal(meta["cost_eur_exact"].value) == sum(final_cost.values())
    assert per_day_costs(result) == [
        str(DAY),
        euro(sum(final_cost.values())),
        euro(sum(first_cost.values())),
    ]


def test_a_sim_whose_events_all_came_late_is_a_change_with_no_previous_cost(
    start_simulator, make_pipeline
):
    """About one event a SIM: some SIMs' only events of the day arrive at a later sync,
    so the re-run adds them to the day; they count as changed, shown with no previous cost."""
    from nova_pipeline.simulator import FleetSpec

    sim = start_simulator(fleet=FleetSpec(seed=7, sims=2000, groups=3, events_per_sim_day=1))
    pipeline = make_pipeline(sim=sim)
    sim.simulator.set_now(dt.datetime(2026, 11, 19, 5, tzinfo=dt.UTC))
    pipeline.run(DAY_KEY)
    first_cost, _ = independent_costs(sim.api_url)
    sim.simulator.set_now(dt.datetime(2026, 11, 22, 5, tzinfo=dt.UTC))
    result = pipeline.run(DAY_KEY)
    final_cost, _ = independent_costs(sim.api_url)

    arrived = sorted(set(final_cost) - set(first_cost))
    changed = {s for s in final_cost if final_cost[s] != first_cost.get(s)}
    assert arrived and len(changed) <= 50
    meta = result.asset_materializations_for_node("sim_daily_cost")[0].metadata
    assert meta["sims_changed"].value == len(changed)
    shown = {int(row[1]): row for row in table_rows(meta["changes"].value)}
    assert set(shown) == changed
    assert [shown[s] for s in arrived] == [
        [str(DAY), str(s), "—", euro(final_cost[s])] for s in arrived
    ]


def test_a_restatement_counts_every_changed_sim_and_shows_the_first_50(
    start_simulator, make_pipeline
):
    """Events corrected for most SIMs, then the per-SIM cost re-run on its own: every
    changed SIM is counted, the first 50 by sim_id are shown with both costs."""
    from nova_pipeline.simulator import FleetSpec

    sim = start_simulator(fleet=FleetSpec(seed=7, sims=90, groups=3, events_per_sim_day=6))
    pipeline = make_pipeline(sim=sim)
    pipeline.run(DAY_KEY)
    before = dict(pipeline.sql("SELECT sim_id, cost_eur FROM sim_daily_cost WHERE day = ?", DAY))
    pipeline.sql("UPDATE call_sms_events SET cost_eur = cost_eur + 0.01 WHERE sim_id % 3 <> 0")
    result = pipeline.run(DAY_KEY, selection=["sim_daily_cost"])

    changed = sorted(s for s in before if s % 3 != 0)
    assert len(changed) > 50
    meta = result.asset_materializations_for_node("sim_daily_cost")[0].metadata
    assert meta["sims_changed"].value == len(changed)
    shown = meta["changes"].value.splitlines()[2:]
    assert len(shown) == 50
    first = changed[0]
    [(events,)] = pipeline.sql("SELECT count(*) FROM call_sms_events WHERE sim_id = ?", first)
    now = before[first] + Decimal("0.01") * events
    assert shown[0] == f"| {DAY} | {first} | {euro(before[first])} | {euro(now)} |"


def test_a_sim_row_carries_the_number_iccid_and_name_of_its_latest_event(tmp_path):
    """A SIM renumbered and renamed during the day: its row takes the values of its latest
    event by time, whatever order the events were written in."""
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    con.execute("SET TimeZone = 'UTC'")
    ensure_schema(con)
    rows = [  # sid, hour, sim, number, iccid, name, cost
        (3, 9, 7, "+77010000003", "89701990000000003", None, "0.300000"),
        (1, 2, 7, "+77010000001", "89701990000000001", "Van-7", "0.100000"),
        (4, 5, 8, "+77010000008", "89701990000000008", "Gate-8", "1.000000"),
        (2, 6, 7, "+77010000002", "89701990000000002", "Van-7b", "0.200000"),
    ]
    for sid, hour, sim, number, iccid, name, cost in rows:
        con.execute(
            "INSERT INTO call_sms_events VALUES (?, ?, ?, 'call', '+1', ?, ?, ?, ?, ?, false, 0)",
            [
                sid,
                dt.datetime.combine(DAY, dt.time(hour), dt.UTC),
                DAY,
                Decimal(cost),
                sim,
                number,
                iccid,
                name,
            ],
        )
    replace_days(
        con,
        DAY,
        DAY,
        {
            "sim_daily_cost": lambda c: c.execute(
                f"INSERT INTO sim_daily_cost {SIM_DAILY_COST_SQL}", {"start": DAY, "end": DAY}
            )
        },
    )
    assert con.execute(
        "SELECT sim_id, sim_number, iccid, sim_name, call_count, events, cost_eur "
        "FROM sim_daily_cost ORDER BY sim_id"
    ).fetchall() == [
        (7, "+77010000003", "89701990000000003", None, 3, 3, Decimal("0.600000")),
        (8, "+77010000008", "89701990000000008", "Gate-8", 1, 1, Decimal("1.000000")),
    ]


def test_top_sims_show_the_name_and_iccid_of_their_last_day_in_the_range(tmp_path):
    """A SIM given a new name and card between two days is listed once, with its total over
    both days and the name and ICCID of the later one, taken together."""
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    ensure_schema(con)
    second = DAY + dt.timedelta(days=1)
    per_type = ", ".join(["0"] * (len(TABLES["sim_daily_cost"]) - 7))
    rows = [  # day, sim, iccid, name, events, cost
        (DAY, 7, "89701990000000001", "Van-7", 2, "1.500000"),
        (second, 7, "89701990000000002", "Van-7b", 1, "0.250000"),
        (DAY, 8, "89701990000000008", None, 3, "1.000000"),
        (second, 9, "89701990000000009", "Gate-9", 1, "1.750000"),
    ]
    for day, sim, iccid, name, events, cost in rows:
        con.execute(
            f"INSERT INTO sim_daily_cost VALUES (?, ?, '+7701', ?, ?, {per_type}, ?, ?)",
            [day, sim, iccid, name, events, Decimal(cost)],
        )
    assert con.execute(TOP_SIMS_SQL, [DAY, second]).fetchall() == [
        (7, "Van-7b", "89701990000000002", 3, Decimal("1.750000")),
        (9, "Gate-9", "89701990000000009", 1, Decimal("1.750000")),
        (8, None, "89701990000000008", 3, Decimal("1.000000")),
    ]
    assert con.execute(TOP_SIMS_SQL, [DAY, DAY]).fetchall()[0][:3] == (
        7,
        "Van-7",
        "89701990000000001",
    )


def serving(served: dict[str, dict[int, list[str]]]) -> AbstractContextManager[str]:
    """A loopback API answering each pull (`all`, `g_<id>`) of DAY with one page: for each
    SIM of `served[selector]`, a call per cost given, sent as that text; then an empty page.
    The test changes `served` between runs, as a provider re-rating the day would."""
    noon = int(dt.datetime.combine(DAY, dt.time(12), ZoneInfo(DAILY.timezone)).timestamp())

    def answer(asked: dict) -> bytes:
        [selector] = asked["select"]
        items = [
            f'{{"sid":{sim * 100 + i},"date":{noon + i},"type":"call","to_number":"+1",'
            f'"session_cost":{cost},"id":{sim},"original_number":"+7701{sim}",'
            f'"iccid":"8970{sim}","name":"SIM-{sim}"}}'
            for sim, costs in served.get(selector, {}).items()
            for i, cost in enumerate(costs)
        ]
        page = ",".join(items if asked["page"] == 0 else [])
        return f'{{"code":200,"result":{{"items":[{page}]}}}}'.encode()

    return answering_json(answer)


def test_a_day_whose_sum_outgrows_the_cost_column_fails_naming_the_sim_or_group(tmp_path):
    """Each event is under 10^12 euro, the most a cost column holds, but a SIM's or a
    group's day can add up past it (costs sent in a smaller unit than the euro). DuckDB's
    error names only the value; the step names the SIM or group and day, and the previous
    rows stay."""
    rollups = "SELECT * FROM {} ORDER BY ALL"
    raised = "nova_pipeline.assets.costs.CostBeyondColumn"
    small = {7: ["1.5", "2.25"], 8: ["0.5"], 9: ["0.75"]}
    served = {"all": dict(small), "g_1": {8: ["0.5"], 9: ["0.75"]}}
    with serving(served) as api_url:
        pipeline = Pipeline(SimpleNamespace(api_url=api_url), tmp_path, "1=Vans")
        assert pipeline.run(DAY_KEY).success
        before = {
            t: pipeline.sql(rollups.format(t)) for t in ("sim_daily_cost", "group_daily_cost")
        }
        assert [r[-1] for r in before["group_daily_cost"]] == [Decimal("1.25"), Decimal("3.75")]

        def failure(result: dg.ExecuteInProcessResult) -> str:
            assert not result.success
            [failed] = [e for e in result.all_events if e.is_step_failure]
            return f"{failed.step_key}: {failed.step_failure_data.error.cause.message.strip()}"

        served["all"][7] = ["600000000000", "600000000000.000001"]
        sims = pipeline.run(DAY_KEY, raise_on_error=False)
        assert pipeline.sql(rollups.format("sim_daily_cost")) == before["sim_daily_cost"]
        served["all"] = {**small, 8: ["700000000000"], 9: ["700000000000"]}
        served["all"].update({10: ["600000000000"], 11: ["600000000000"]})
        served["g_1"] = {8: ["700000000000"], 9: ["700000000000"]}
        groups = pipeline.run(DAY_KEY, raise_on_error=False)
    assert failure(sims) == (
        f"sim_daily_cost: {raised}: sim_daily_cost not built: SIM 7 on {DAY_KEY} costs "
        "1,200,000,000,000.00 €. Its cost_eur column (DECIMAL(18, 6)) holds under 10^12 € a "
        "row. Each event is under that, so many add up to it: see their events in "
        "call_sms_events (costs sent in a smaller unit than the euro?). Nothing was written; "
        "the previous rows of the run's days are in place."
    )
    assert failure(groups) == (
        f"group_daily_cost: {raised}: group_daily_cost not built: group 1 (Vans) on "
        f"{DAY_KEY} costs 1,400,000,000,000.00 €; ungrouped on {DAY_KEY} costs "
        "1,200,000,000,003.75 €. Its cost_eur column (DECIMAL(18, 6)) holds under 10^12 € a "
        "row. Each event is under that, so many add up to it: see their SIMs in "
        "sim_daily_cost (costs sent in a smaller unit than the euro?). Nothing was written; "
        "the previous rows of the run's days are in place."
    )
    assert pipeline.sql(rollups.format("group_daily_cost")) == before["group_daily_cost"]
    assert pipeline.sql("SELECT sim_id, cost_eur FROM sim_daily_cost ORDER BY sim_id") == [
        (7, Decimal("3.75")),
        (8, Decimal("700000000000")),
        (9, Decimal("700000000000")),
        (10, Decimal("600000000000")),
        (11, Decimal("600000000000")),
    ]
    assert pipeline.sql("SELECT max(cost_eur) FROM call_sms_events") == [(Decimal("700000000000"),)]


def test_a_group_id_beyond_32_bits_is_pulled_and_costed_like_any_other(tmp_path):
    """The contract does not bound a group's id; the largest 64-bit one is taken as SIM ids
    are, its membership and costs stored under it."""
    big = 2**63 - 1
    served = {"all": {7: ["1.5"], 8: ["0.25", "0.5"]}, f"g_{big}": {8: ["0.25", "0.5"]}}
    with serving(served) as api_url:
        pipeline = Pipeline(SimpleNamespace(api_url=api_url), tmp_path, f"{big}=Vans")
        assert pipeline.run(DAY_KEY).success
    assert pipeline.sql("SELECT group_id, sim_id FROM sim_group_membership") == [(big, 8)]
    assert pipeline.sql(
        "SELECT group_id, group_name, active_sims, events, cost_eur FROM group_daily_cost "
        "ORDER BY group_id NULLS LAST"
    ) == [(big, "Vans", 1, 2, Decimal("0.75")), (None, "ungrouped", 1, 1, Decimal("1.5"))]
