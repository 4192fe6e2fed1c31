"""The simulator answers the contract, checked with an independent client (plain httpx)."""

from __future__ import annotations

import datetime as dt
import json
import subprocess
import sys
from decimal import Decimal
from zoneinfo import ZoneInfo

import httpx
import pytest

from nova_pipeline.simulator import FleetSpec
from nova_pipeline.simulator.dataset import Dataset, build_fleet, euro_text
from tests.conftest import DAY, NOW, SMALL_FLEET


def post(sim, body: dict, **headers: str) -> httpx.Response:
    return httpx.post(f"{sim.api_url}/report/call_sms", json=body, headers=headers, timeout=30)


def query(start: str, end: str | None = None, select=("all",), page=0, size=1000) -> dict:
    return {
        "filter": {"start": start, "end": end or start},
        "select": list(select),
        "page": page,
        "size": size,
    }


def luhn_ok(number: str) -> bool:
    """The Luhn check real ICCIDs pass, written out here rather than taken from the
    simulator: every second digit from the right doubled, the digits' sum a multiple of 10."""
    digits = [int(d) for d in reversed(number)]
    doubled = [sum(divmod(2 * d, 10)) for d in digits[1::2]]
    return number.isdigit() and (sum(digits[0::2]) + sum(doubled)) % 10 == 0


def all_items(
    sim, start: str, end: str | None = None, select=("all",), size=1000, parse_float=float
) -> list[dict]:
    items, page = [], 0
    while True:
        body = post(sim, query(start, end, select, page, size)).content
        got = json.loads(body, parse_float=parse_float)["result"]["items"]
        if not got:
            return items
        items += got
        page += 1


def test_a_day_has_the_documented_item_shape(simulator):
    items = all_items(simulator, "18-11-2026")
    assert len(items) > 300
    for item in items:
        assert set(item) == {
            "sid",
            "date",
            "type",
            "to_number",
            "session_cost",
            "id",
            "original_number",
            "iccid",
            "name",
        }
        assert item["type"] in {"call", "in_sms", "out_sms", "ussd"}
        assert isinstance(item["sid"], int) and isinstance(item["date"], int)
        assert isinstance(item["to_number"], str) and isinstance(item["original_number"], str)
        assert 19 <= len(item["iccid"]) <= 20 and luhn_ok(item["iccid"])
        assert Decimal(str(item["session_cost"])).as_tuple().exponent >= -6
        assert item["session_cost"] >= 0
    assert len({i["sid"] for i in items}) == len(items)
    assert [i["sid"] for i in items] == sorted(i["sid"] for i in items)
    assert [i["date"] for i in items] == sorted(i["date"] for i in items), "sids follow time"
    by_type = {t: [i for i in items if i["type"] == t] for t in ("in_sms", "out_sms", "call")}
    assert all(i["to_number"] == i["original_number"] for i in by_type["in_sms"])
    assert not any(i["to_number"] == i["original_number"] for i in by_type["out_sms"])
    assert not any(i["to_number"] == i["original_number"] for i in by_type["call"])
    assert {i["type"] for i in items} == {"call", "in_sms", "out_sms", "ussd"}
    assert any(i["name"] is None for i in items)
    tz = ZoneInfo("Asia/Almaty")
    assert {dt.datetime.fromtimestamp(i["date"], tz).date() for i in items} == {DAY}


def test_the_fleet_has_real_iccids_and_about_15_percent_of_sims_in_no_group():
    sims = build_fleet(FleetSpec(seed=3, sims=2000, groups=6))
    assert all(luhn_ok(s.iccid) for s in sims)
    assert {len(s.iccid) for s in sims} == {19, 20}
    ungrouped = sum(s.group_id is None for s in sims) / len(sims)
    assert 0.12 < ungrouped < 0.18
    assert {s.group_id for s in sims} == {None, 1, 2, 3, 4, 5, 6}


@pytest.mark.parametrize(
    ("micros", "text"),
    [
        (0, b"0.0"),
        (50_000, b"0.05"),
        (1_234_567, b"1.234567"),
        (2_000_000, b"2.0"),
        (1, b"0.000001"),
    ],
)
def test_a_cost_is_the_shortest_json_float_that_denotes_it_exactly(micros, text):
    assert euro_text(micros) == text
    assert Decimal(text.decode()) * 1_000_000 == micros


def test_calls_cost_most_and_incoming_sms_are_mostly_free(simulator):
    items = all_items(simulator, "18-11-2026")
    mean = {
        t: sum(i["session_cost"] for i in items if i["type"] == t)
        / sum(1 for i in items if i["type"] == t)
        for t in ("call", "in_sms", "out_sms", "ussd")
    }
    assert mean["call"] > mean["out_sms"] > mean["ussd"]
    free_in = [i for i in items if i["type"] == "in_sms" and i["session_cost"] == 0]
    assert len(free_in) > 0.8 * sum(1 for i in items if i["type"] == "in_sms")


def test_filter_end_is_inclusive(simulator):
    both = all_items(simulator, "17-11-2026", "18-11-2026")
    first, second = all_items(simulator, "17-11-2026"), all_items(simulator, "18-11-2026")
    assert both == first + second


def test_pages_are_stable_and_partition_the_query(simulator):
    whole = all_items(simulator, "18-11-2026", size=1000)
    paged = all_items(simulator, "18-11-2026", size=37)
    assert paged == whole


def test_selectors_sim_group_and_union(simulator):
    everything = all_items(simulator, "18-11-2026")
    sims = simulator.simulator.dataset.sims
    group_1 = {s.id for s in sims if s.group_id == 1}
    group_2 = {s.id for s in sims if s.group_id == 2}
    got_1 = all_items(simulator, "18-11-2026", select=["g_1"])
    assert {i["id"] for i in got_1} == group_1
    assert got_1 == [i for i in everything if i["id"] in group_1]
    union = all_items(simulator, "18-11-2026", select=["g_1", "g_2"])
    assert union == [i for i in everything if i["id"] in group_1 | group_2]
    one = all_items(simulator, "18-11-2026", select=[f"s_{sims[0].id}"])
    assert one and {i["id"] for i in one} == {sims[0].id}
    ungrouped = {s.id for s in sims if s.group_id is None}
    assert ungrouped, "some SIMs belong to no group"


def test_a_day_appears_only_after_the_next_days_sync(start_simulator):
    sync_of_19th = dt.datetime(2026, 11, 19, 4, 0, tzinfo=NOW.tzinfo)
    before = start_simulator(now=sync_of_19th - dt.timedelta(minutes=1))
    after = start_simulator(now=sync_of_19th)
    assert all_items(before, "18-11-2026") == []
    assert len(all_items(after, "18-11-2026")) > 300
    assert all_items(after, "19-11-2026") == []
    assert all_items(after, "01-01-2027") == []


def test_a_filter_with_one_day_or_none_asks_for_that_day_or_the_latest_complete_one(simulator):
    """The contract makes both filter fields optional: one alone is that day; none is the
    latest day a sync has published (NOW is after the sync of the 20th: the 19th)."""
    the_18th = all_items(simulator, "18-11-2026")
    for only in ({"start": "18-11-2026"}, {"end": "18-11-2026"}):
        body = {"filter": only, "select": ["all"], "size": 1000}
        assert post(simulator, body).json()["result"]["items"] == the_18th[:1000]
    latest = post(simulator, {"select": ["all"], "size": 1000}).json()["result"]["items"]
    assert latest == all_items(simulator, "19-11-2026")[:1000] != []


def test_late_and_rerated_records_arrive_at_later_syncs(start_simulator):
    """The 18th as the syncs of the 19th, 20th and 21st leave it: each of the two later
    syncs brings late records and re-rates some costs."""
    fleet = FleetSpec(seed=7, sims=1000, groups=3, events_per_sim_day=12)
    sim = start_simulator(fleet, now=dt.datetime(2026, 11, 19, 5, tzinfo=NOW.tzinfo))
    by_sid = []
    for day in (19, 20, 21):
        sim.simulator.set_now(dt.datetime(2026, 11, day, 5, tzinfo=NOW.tzinfo))
        by_sid.append({i["sid"]: i["session_cost"] for i in all_items(sim, "18-11-2026")})
    first, second, final = by_sid
    assert set(first) < set(second) < set(final)
    assert 0.002 * len(final) < len(final) - len(first) < 0.03 * len(final)
    rerated_by_second = {s for s in first if first[s] != second[s]}
    rerated_by_final = {s for s in first if first[s] != final[s]}
    assert rerated_by_second and rerated_by_second < rerated_by_final
    assert len(rerated_by_final) < 0.02 * len(final)
    fresh = start_simulator(fleet, now=dt.datetime(2026, 11, 21, 5, tzinfo=NOW.tzinfo))
    assert all_items(fresh, "18-11-2026") == all_items(sim, "18-11-2026"), "no stale cache"


def test_a_rerated_record_always_changes_its_cost():
    """A free event re-rated at its own cost, or a late record re-rated before it first
    appears, would be a re-rating no client can see."""
    day = Dataset(FleetSpec(seed=7, sims=1000, groups=3)).day_events(DAY)
    assert len(day.rerated_items) > 0.003 * len(day.items)
    costs = {
        i: (json.loads(day.items[i])["session_cost"], json.loads(new)["session_cost"])
        for i, new in day.rerated_items.items()
    }
    assert all(old != new for old, new in costs.values())
    assert all(day.rerate_at[i] > day.arrival[i] for i in day.rerated_items), (
        "a record is re-rated at a sync after the one that brought it"
    )
    assert any(old == 0 for old, _ in costs.values()), "free events are re-rated too"


def test_page_size_above_the_maximum_is_silently_capped(start_simulator):
    sim = start_simulator(max_page_size=100)
    body = post(sim, query("18-11-2026", size=5000)).json()
    assert len(body["result"]["items"]) == 100


def test_a_wrong_or_missing_token_gets_401(start_simulator):
    sim = start_simulator(token="s3cret")
    assert post(sim, query("18-11-2026")).status_code == 401
    assert post(sim, query("18-11-2026"), Authorization="Bearer nope").status_code == 401
    assert post(sim, query("18-11-2026"), Authorization="Bearer s3cret").status_code == 200


@pytest.mark.parametrize(
    ("body", "message"),
    [
        (query("2026-11-18"), "DD-MM-YYYY"),
        (query("31-02-2026"), "not a calendar date"),
        (query("19-11-2026", "18-11-2026"), "is after"),
        (query("18-11-2026", select=["x_1"]), "unknown selector"),
        (query("18-11-2026", select=["g_99"]), "no group with id 99"),
        (query("18-11-2026", select=["s_99999999"]), "no SIM card with id 99999999"),
        (query("18-11-2026", page=-1), "page must be"),
        (query("18-11-2026", page=True), "page must be"),
        (query("18-11-2026", size=0), "size must be"),
    ],
)
def test_a_bad_request_gets_400_with_what_was_wrong(simulator, body, message):
    response = post(simulator, body)
    assert response.status_code == 400
    assert response.json()["code"] == 400
    assert message in response.json()["message"]


def test_same_seed_gives_byte_identical_responses(start_simulator):
    a, b = start_simulator(), start_simulator()
    c = start_simulator(fleet=SMALL_FLEET.__class__(**{**SMALL_FLEET.__dict__, "seed": 8}))
    body = query("18-11-2026", size=50, page=2)
    assert post(a, body).content == post(b, body).content
    assert post(a, body).content != post(c, body).content


def test_the_clock_endpoint_moves_the_provider_clock(start_simulator):
    sim = start_simulator(now=dt.datetime(2026, 11, 18, 12, tzinfo=NOW.tzinfo))
    assert all_items(sim, "18-11-2026") == []
    moved = httpx.post(
        sim.api_url.removesuffix("/api") + "/_simulator/clock",
        json={"now": "2026-11-19T05:00:00+05:00"},
    )
    assert moved.status_code == 200
    assert len(all_items(sim, "18-11-2026")) > 300


def test_cli_rejects_an_unknown_fault():
    from nova_pipeline.simulator.__main__ import _args

    with pytest.raises(SystemExit):
        _args(["--faults", "meteor"])
    assert _args(["--faults", "slow", "--fault-rate", "slow=0.5"]).fault_rates == {"slow": 0.5}


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["--faults", "slow", "--fault-rate", "slow=1.5"], "between 0 and 1"),
        (["--faults", "slow", "--fault-rate", "slow=-0.1"], "between 0 and 1"),
        (["--faults", "slow", "--fault-rate", "rate_limit=0.5"], "is not switched on"),
    ],
)
def test_cli_rejects_a_fault_rate_it_cannot_apply(argv, message, capsys):
    from nova_pipeline.simulator.__main__ import _args

    with pytest.raises(SystemExit):
        _args(argv)
    assert message in capsys.readouterr().err


def test_a_port_already_taken_is_said_in_one_line(simulator):
    """`make simulator` while another one serves on its port (8765): a line, not a traceback."""
    port = httpx.URL(simulator.api_url).port
    taken = subprocess.run(
        [sys.executable, "-m", "nova_pipeline.simulator", "--port", str(port)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert taken.returncode == 1
    assert taken.stderr.startswith(f"cannot serve on 127.0.0.1:{port}: Address already in use.")
    assert "--port" in taken.stderr and "Traceback" not in taken.stderr


def test_body_is_compact_json(simulator):
    raw = post(simulator, query("18-11-2026", size=3)).content
    assert json.loads(raw)["code"] == 200
    assert b"\n" not in raw
