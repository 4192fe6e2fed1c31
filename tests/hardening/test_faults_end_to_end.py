"""Faults and bad input through the whole pipeline: nothing lost, nothing doubled."""

from __future__ import annotations

import datetime as dt
import json

import pytest

from tests.conftest import DAY, landed_lines

DAY_KEY = DAY.isoformat()
TRANSPORT_AND_CONTENT = {
    "rate_limit": 0.15,
    "server_error": 0.15,
    "slow": 0.05,
    "disconnect": 0.08,
    "malformed_json": 0.08,
    "wrong_encoding": 0.08,
    "bad_items": 0.3,
    "duplicates": 0.3,
    "pretty_json": 0.5,
    "byte_order_mark": 1.0,
}
TABLES = ["call_sms_events", "sim_daily_cost", "group_daily_cost", "sim_group_membership"]


def tables(pipeline) -> dict[str, list]:
    return {t: pipeline.sql(f"SELECT * FROM {t} ORDER BY ALL") for t in TABLES}


def failure_message(result, step: str) -> str:
    return "\n".join(
        str(event.step_failure_data.error)
        for event in result.all_events
        if event.is_step_failure and event.step_key == step
    )


def test_all_faults_at_once_give_the_fault_free_numbers(make_pipeline):
    clean = make_pipeline(page_size=50)
    clean_raw = clean.run(DAY_KEY).asset_materializations_for_node("call_sms_raw_pages")[0]
    faulty = make_pipeline(
        page_size=50,
        read_timeout_s=0.3,
        max_attempts=30,
        faults=TRANSPORT_AND_CONTENT,
        retry_after=0,
        slow_seconds=1.0,
    )
    result = faulty.run(DAY_KEY)

    assert tables(faulty) == tables(clean)
    # A key sent twice passes the client's check: on a group pull's page with no other bad
    # item, no step judges it into the rejects (the events step reads the account-wide
    # pull's conforming pages only); membership and the group check leave it out and warn.
    injected = sorted(
        json.dumps(json.loads(raw), sort_keys=True)
        for (query, _), made in faulty.sim.simulator.injected_bad_items.items()
        if query[2] == ("all",) or any(kind != "duplicate_key" for kind, _ in made)
        for _, raw in made
    )
    rejects = sorted(
        json.dumps(json.loads(r[0]), sort_keys=True)
        for r in faulty.sql("SELECT item FROM call_sms_rejects")
    )
    assert len(injected) >= 3 and rejects == injected
    assert faulty.sql("SELECT count(*) FROM call_sms_rejects WHERE reason = ''") == [(0,)]

    raw = result.asset_materializations_for_node("call_sms_raw_pages")[0].metadata
    events = result.asset_materializations_for_node("call_sms_events")[0].metadata
    reasons = raw["retry_reasons"].value
    assert raw["retries"].value >= 10
    assert raw["requests"].value == clean_raw.metadata["requests"].value + raw["retries"].value
    assert raw["rate_limited_429"].value == reasons["HTTP 429"] >= 2
    assert any(r.startswith("timeout") for r in reasons)
    assert any(r.startswith("connection error") for r in reasons)
    assert any(r.startswith("invalid JSON") for r in reasons)
    assert any(r.startswith("body not in its Content-Encoding") for r in reasons)
    assert any(r.startswith("HTTP 50") for r in reasons)
    assert events["duplicates_collapsed"].value > 0
    # A body laid out over lines (CRLF) is landed as one line, values unchanged.
    landed = [
        line
        for path in (faulty.root / "landing").rglob("*.ndjson.zst")
        for line in landed_lines(path)
    ]
    assert len(landed) == faulty.sql("SELECT count(*) FROM call_sms_raw_pages")[0][0]
    assert any(b'"items": [' in line for line in landed), "no page came pretty-printed"
    assert not [line for line in landed if b"\xef\xbb\xbf" in line], "a byte order mark landed"
    # Every page is kept, the closing empty ones too: the retries of each are on its row.
    retried_pages = faulty.sql("SELECT sum(attempts - 1) FROM call_sms_raw_pages")[0][0]
    assert retried_pages == raw["retries"].value > 0
    assert faulty.sql(
        "SELECT count(*) FROM call_sms_raw_pages "
        "WHERE (attempts > 1 AND len(string_split(retry_reasons, '; ')) <> attempts - 1) "
        "OR (attempts = 1) <> (retry_reasons = '')"
    ) == [(0,)], "each retried page lists the reason of each failed attempt"


def test_a_server_that_ignores_the_page_number_fails_the_run_and_keeps_the_day(make_pipeline):
    pipeline = make_pipeline()
    pipeline.run(DAY_KEY)
    before = tables(pipeline)
    raw_before = pipeline.sql("SELECT * FROM call_sms_raw_pages ORDER BY ALL")
    pipeline.sim.simulator.faults.rates["ignore_page"] = 1.0
    result = pipeline.run(DAY_KEY, raise_on_error=False)
    assert not result.success
    assert "ignored the page number" in failure_message(result, "call_sms_raw_pages")
    assert tables(pipeline) == before
    assert pipeline.sql("SELECT * FROM call_sms_raw_pages ORDER BY ALL") == raw_before


def test_a_range_with_one_failing_day_keeps_every_day_and_lands_nothing_new(make_pipeline):
    """The days of a range are pulled a few at a time; when one fails, the fetches of the
    days pulled beside it are removed too, and every day keeps its previous data."""
    from nova_pipeline.simulator.app import Query

    pipeline = make_pipeline(groups="", page_size=50)
    days = [DAY - dt.timedelta(days=n) for n in range(5, -1, -1)]
    pipeline.run(days[0].isoformat(), days[-1].isoformat())
    before = tables(pipeline)
    raw_before = pipeline.sql("SELECT * FROM call_sms_raw_pages ORDER BY ALL")
    fetches_before = sorted((pipeline.root / "landing").rglob("fetch=*"))
    assert len(fetches_before) == len(days)

    faults = pipeline.sim.simulator.faults
    faults.rates["ignore_page"] = 0.5
    failing = [d for d in days if faults.hits("ignore_page", Query(d, d, ("all",), 0, 50).key)]
    assert 0 < len(failing) < len(days), "the fault must spare some days of the range"
    result = pipeline.run(days[0].isoformat(), days[-1].isoformat(), raise_on_error=False)
    assert "ignored the page number" in failure_message(result, "call_sms_raw_pages")
    assert tables(pipeline) == before
    assert pipeline.sql("SELECT * FROM call_sms_raw_pages ORDER BY ALL") == raw_before
    assert sorted((pipeline.root / "landing").rglob("fetch=*")) == fetches_before


def test_a_wrong_token_fails_at_once_naming_the_setting_and_writes_nothing(
    start_simulator, make_pipeline
):
    sim = start_simulator(token="right-token")
    pipeline = make_pipeline(sim=sim)
    pipeline.reconfigure("nova_api", api_token="wrong-token-5e1f")
    result = pipeline.run(DAY_KEY, raise_on_error=False)
    message = failure_message(result, "call_sms_raw_pages")
    assert "NOVA_API_TOKEN" in message and "wrong-token-5e1f" not in message
    assert sim.simulator.requests == 1, "an auth failure is not retried"
    assert pipeline.sql("SELECT count(*) FROM call_sms_raw_pages") == [(0,)]
    assert list((pipeline.root / "landing").rglob("*.ndjson*")) == []
    pipeline.reconfigure("nova_api", api_token="right-token")
    assert pipeline.run(DAY_KEY).success, "the same pipeline with the right token pulls the day"


def test_an_unknown_group_is_a_clear_error_carrying_the_servers_message(make_pipeline):
    pipeline = make_pipeline(groups="1=Trackers,42=Ghosts")
    result = pipeline.run(DAY_KEY, raise_on_error=False)
    message = failure_message(result, "call_sms_raw_pages")
    assert "HTTP 400" in message and "no group with id 42" in message
    assert pipeline.sql("SELECT count(*) FROM call_sms_raw_pages") == [(0,)]


def test_schema_drift_an_extra_field_is_kept_raw_loaded_without_it_and_counted(make_pipeline):
    clean = make_pipeline()
    clean.run(DAY_KEY)
    drifting = make_pipeline(faults={"extra_fields": 0.5})
    result = drifting.run(DAY_KEY)
    assert tables(drifting) == tables(clean)
    landed = [
        item
        for path in (drifting.root / "landing").rglob("*.ndjson.zst")
        for line in landed_lines(path)
        for item in json.loads(line)["body"]["result"]["items"]
        if "roaming" in item
    ]
    assert landed, "the extra field is kept verbatim in the raw pages"
    meta = result.asset_materializations_for_node("call_sms_events")[0].metadata
    assert meta["items_with_extra_fields"].value == len(landed)


@pytest.mark.parametrize(
    ("fault", "api_charset"), [("declared_windows_1251", ""), ("windows_1251", "windows-1251")]
)
def test_a_page_in_windows_1251_lands_its_names_as_sent(make_pipeline, fault, api_charset):
    """The last item of each page is renamed in Cyrillic, and the page sent whole in
    windows-1251, with the charset in its Content-Type or in NOVA_API_CHARSET: the names
    reach the warehouse as the same text, everything else as in a clean run."""
    clean = make_pipeline()
    clean.run(DAY_KEY)
    cyrillic = make_pipeline(faults={fault: 1.0}, api_charset=api_charset)
    assert cyrillic.run(DAY_KEY).success
    renamed = "SELECT sid FROM call_sms_events WHERE sim_name = 'Поезд-7'"
    pages = "SELECT count(*) FROM call_sms_raw_pages WHERE selector = 'all' AND item_count > 0"
    assert len(cyrillic.sql(renamed)) == cyrillic.sql(pages)[0][0] > 0
    assert cyrillic.sql(
        f"SELECT * EXCLUDE (sim_name) FROM call_sms_events WHERE sid IN ({renamed}) ORDER BY ALL"
    ) == clean.sql(
        f"SELECT * EXCLUDE (sim_name) FROM call_sms_events WHERE sid IN "
        f"({', '.join(str(sid) for (sid,) in cyrillic.sql(renamed))}) ORDER BY ALL"
    )
    costs = "SELECT * EXCLUDE (sim_name) FROM sim_daily_cost ORDER BY ALL"
    assert cyrillic.sql(costs) == clean.sql(costs)


def test_a_name_cut_inside_a_character_stops_the_pull_unless_the_setting_replaces_it(
    make_pipeline,
):
    """Each page's last name is "Gate \\ud83d", half an emoji. By default the pull stops at
    the first such page, saying where and naming the setting, and writes nothing. With
    NOVA_API_LONE_SURROGATES=replace the day loads: those SIMs are named "Gate \\ufffd",
    every cost, group and membership is as in a clean run, and the day's pull counts the
    replacements."""
    clean = make_pipeline()
    clean.run(DAY_KEY)
    stopped = make_pipeline(faults={"lone_surrogate": 1.0})
    failed = stopped.run(DAY_KEY, raise_on_error=False)
    assert not failed.success
    message = failure_message(failed, "call_sms_raw_pages")
    assert "a lone UTF-16 surrogate escape, \\ud83d at byte" in message
    assert "set NOVA_API_LONE_SURROGATES=replace" in message
    assert stopped.sql("SELECT count(*) FROM call_sms_raw_pages") == [(0,)]

    mended = make_pipeline(faults={"lone_surrogate": 1.0}, api_lone_surrogates="replace")
    result = mended.run(DAY_KEY)
    assert result.success
    renamed = "SELECT count(*) FROM call_sms_events WHERE sim_name = 'Gate \ufffd'"
    pages = "SELECT count(*) FROM call_sms_raw_pages WHERE item_count > 0"
    all_pages = pages + " AND selector = 'all'"
    assert mended.sql(renamed) == mended.sql(all_pages) != [(0,)]
    for table in TABLES:
        columns = "* EXCLUDE (sim_name)" if table in ("call_sms_events", "sim_daily_cost") else "*"
        query = f"SELECT {columns} FROM {table} ORDER BY ALL"
        assert mended.sql(query) == clean.sql(query), table
    raw = result.asset_materializations_for_node("call_sms_raw_pages")[0].metadata
    assert raw["lone_surrogates_replaced"].value == mended.sql(pages)[0][0]
    assert mended.sql(pages)[0][0] > mended.sql(all_pages)[0][0], "group pulls mended too"
