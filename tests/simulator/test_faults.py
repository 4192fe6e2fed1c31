"""Each fault by name does what its name says, and only that."""

from __future__ import annotations

import json
from decimal import Decimal

import httpx
import pytest

from tests.simulator.test_contract import all_items, post, query


def test_rate_limit_sends_429_with_retry_after(start_simulator):
    sim = start_simulator(faults={"rate_limit": 1.0}, retry_after=3)
    response = post(sim, query("18-11-2026"))
    assert response.status_code == 429
    assert response.headers["Retry-After"] == "3"


def test_server_error_sends_5xx(start_simulator):
    sim = start_simulator(faults={"server_error": 1.0})
    statuses = {post(sim, query("18-11-2026", page=p)).status_code for p in range(12)}
    assert statuses <= {500, 502, 503} and len(statuses) >= 2


def test_slow_holds_the_response_past_a_timeout(start_simulator):
    sim = start_simulator(faults={"slow": 1.0}, slow_seconds=2)
    with pytest.raises(httpx.ReadTimeout):
        httpx.post(f"{sim.api_url}/report/call_sms", json=query("18-11-2026"), timeout=0.3)


def test_disconnect_closes_mid_body(start_simulator):
    sim = start_simulator(faults={"disconnect": 1.0})
    with pytest.raises(httpx.RemoteProtocolError):
        post(sim, query("18-11-2026"))


def test_wrong_encoding_labels_a_plain_body_gzip(start_simulator, simulator):
    sim = start_simulator(faults={"wrong_encoding": 1.0})
    with pytest.raises(httpx.DecodingError):
        post(sim, query("18-11-2026"))
    with httpx.stream("POST", f"{sim.api_url}/report/call_sms", json=query("18-11-2026")) as r:
        assert r.headers["Content-Encoding"] == "gzip"
        assert b"".join(r.iter_raw()) == post(simulator, query("18-11-2026")).content


def test_byte_order_mark_precedes_every_body_of_the_same_json(start_simulator, simulator):
    sim = start_simulator(faults={"byte_order_mark": 1.0})
    for page in (0, 1):
        plain = post(simulator, query("18-11-2026", page=page, size=400)).content
        assert post(sim, query("18-11-2026", page=page, size=400)).content == (
            b"\xef\xbb\xbf" + plain
        )


@pytest.mark.parametrize("undeclared_too", [False, True])
def test_declared_windows_1251_sends_the_page_in_it_and_says_so(start_simulator, undeclared_too):
    """With `windows_1251` on too, the page is windows-1251 throughout, as declared."""
    faults = {"declared_windows_1251": 1.0, "windows_1251": float(undeclared_too)}
    response = post(start_simulator(faults=faults), query("18-11-2026", size=100))
    assert response.headers["Content-Type"] == "application/json; charset=windows-1251"
    assert '"Поезд-7"}]'.encode("cp1251") in response.content
    assert json.loads(response.text)["result"]["items"][-1]["name"] == "Поезд-7"


def test_malformed_json_truncates_the_body(start_simulator):
    sim = start_simulator(faults={"malformed_json": 1.0})
    response = post(sim, query("18-11-2026"))
    assert response.status_code == 200
    with pytest.raises(ValueError):
        response.json()


def test_transport_faults_are_per_attempt_so_a_retry_can_pass(start_simulator):
    sim = start_simulator(faults={"server_error": 0.5})
    statuses = [post(sim, query("18-11-2026")).status_code for _ in range(20)]
    assert 200 in statuses and any(s >= 500 for s in statuses)


def test_bad_items_are_added_beside_the_valid_ones(start_simulator, simulator):
    faulty = start_simulator(faults={"bad_items": 1.0})
    clean = all_items(simulator, "18-11-2026", size=100)
    got = all_items(faulty, "18-11-2026", size=100)
    injected = [raw for made in faulty.simulator.injected_bad_items.values() for _, raw in made]
    assert len(got) == len(clean) + len(injected)
    assert [i for i in got if i in clean] == clean


def test_duplicates_repeat_items_of_the_previous_page(start_simulator, simulator):
    faulty = start_simulator(faults={"duplicates": 1.0})
    clean = all_items(simulator, "18-11-2026", size=100)
    got = all_items(faulty, "18-11-2026", size=100)
    assert len(got) > len(clean)
    assert list({i["sid"]: i for i in got}.values()) == clean


def test_day_overlap_serves_the_end_of_the_day_before_to_every_pull(start_simulator, simulator):
    faulty = start_simulator(faults={"day_overlap": 1.0})
    day_before = all_items(simulator, "17-11-2026", size=100)
    clean = all_items(simulator, "18-11-2026", size=100)
    assert all_items(faulty, "18-11-2026", size=100) == day_before[-3:] + clean
    last_sids = {i["sid"] for i in day_before[-3:]}
    sim_of = {i["sid"]: i["id"] for i in day_before[-3:]}
    extras = []
    for group in ("g_1", "g_2", "g_3"):
        group_clean = all_items(simulator, "18-11-2026", select=(group,), size=100)
        got = all_items(faulty, "18-11-2026", select=(group,), size=100)
        extra = got[: len(got) - len(group_clean)]
        assert got[len(extra) :] == group_clean
        assert {i["sid"] for i in extra} <= last_sids
        group_sims = {i["id"] for i in all_items(simulator, "17-11-2026", select=(group,))}
        assert {i["sid"] for i in extra} == {s for s in last_sids if sim_of[s] in group_sims}
        extras += extra
    assert extras, "no group pull got the overlap: the test would not see a wrong subset"


def test_ignore_page_answers_page_zero_whatever_is_asked(start_simulator):
    sim = start_simulator(faults={"ignore_page": 1.0})
    assert (
        post(sim, query("18-11-2026", page=3, size=10)).content
        == post(sim, query("18-11-2026", page=0, size=10)).content
    )


def test_pretty_json_lays_the_same_items_out_over_lines(start_simulator, simulator):
    faulty = start_simulator(faults={"pretty_json": 1.0})
    body = post(faulty, query("18-11-2026", size=100)).content
    assert body.count(b"\r\n") > 100 * 9, "each item's fields on lines of their own"
    assert body.startswith(b'{\r\n  "code": 200,')
    clean = all_items(simulator, "18-11-2026", size=100)
    assert all_items(faulty, "18-11-2026", size=100) == clean


def test_cost_in_cents_sends_every_cost_a_hundred_times_over_and_nothing_else(
    start_simulator, simulator
):
    faulty = start_simulator(faults={"cost_in_cents": 1.0})
    cents = all_items(faulty, "18-11-2026", size=100, parse_float=Decimal)
    euro = all_items(simulator, "18-11-2026", size=100, parse_float=Decimal)
    assert [c["session_cost"] for c in cents] == [e["session_cost"] * 100 for e in euro]
    assert sum(e["session_cost"] > 0 for e in euro) > 100
    unpriced = [{**item, "session_cost": None} for item in cents]
    assert unpriced == [{**item, "session_cost": None} for item in euro]


def test_empty_group_empties_group_pulls_and_nothing_else(start_simulator, simulator):
    faulty = start_simulator(faults={"empty_group": 1.0})
    grouped = all_items(simulator, "18-11-2026", select=("g_1",))
    assert len(grouped) > 50
    assert all_items(faulty, "18-11-2026", select=("g_1",)) == []
    assert all_items(faulty, "18-11-2026", select=("g_1", "g_2")) == []
    sim = f"s_{grouped[0]['id']}"
    assert all_items(faulty, "18-11-2026", select=(sim,)) == all_items(
        simulator, "18-11-2026", select=(sim,)
    )
    assert all_items(faulty, "18-11-2026") == all_items(simulator, "18-11-2026")
