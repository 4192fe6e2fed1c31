"""Settings: defaults, and one clear error naming the variable for each bad value."""

from __future__ import annotations

import datetime as dt
import os
import re
from pathlib import Path
from zoneinfo import ZoneInfo

import dagster as dg
import httpx
import pytest

from nova_pipeline.resources import NovaApiResource, build_resources
from nova_pipeline.schedules import days_for_tick
from nova_pipeline.settings import SettingsError, load_settings, parse_groups


def test_defaults_point_at_the_simulator_and_almaty():
    s = load_settings({})
    assert s.api_url == "http://127.0.0.1:8765/api"
    assert s.timezone == "Asia/Almaty" and s.start_date == dt.date(2024, 1, 1)
    assert s.page_size == 1000 and s.max_pages == 100_000 and s.lookback_days == 3
    assert s.duckdb_path == Path("data/nova.duckdb") and s.groups == {}


def test_a_trailing_slash_on_the_api_url_is_dropped():
    assert load_settings({"NOVA_API_URL": "https://h.kz/api/"}).api_url == "https://h.kz/api"


def test_the_token_never_shows_in_the_settings_repr():
    assert "s3cret" not in repr(load_settings({"NOVA_API_TOKEN": "s3cret"}))


def test_a_token_a_header_cannot_carry_fails_at_load_without_showing_it():
    """A line break inside the token (a CRLF file) would fail every request as a connection
    error after all its retries, a non-ASCII letter would raise from the encoder; blanks
    around it, a trailing newline included, are dropped."""
    for token, position in (("s3cret\r\nX-Other: 1", 7), ("s3crét", 5)):
        with pytest.raises(SettingsError) as error:
            load_settings({"NOVA_API_TOKEN": token})
        message = str(error.value)
        assert message.startswith(f"NOVA_API_TOKEN: character {position} of {len(token)} is")
        assert "s3c" not in message and "(the value is not shown)" in message
    assert load_settings({"NOVA_API_TOKEN": " s3cret\r\n"}).api_token == "s3cret"


def test_a_password_in_the_api_url_fails_at_load_without_showing_it():
    for url in ("https://fleet:s3cret@api.nova.kz/api", "https://s3cret@api.nova.kz/api"):
        with pytest.raises(SettingsError) as error:
            load_settings({"NOVA_API_URL": url})
        assert str(error.value).startswith("NOVA_API_URL holds a user name or password")
        assert "s3cret" not in str(error.value)


def test_groups_parse_and_duckdb_path_follows_data_dir():
    s = load_settings({"NOVA_GROUPS": "1=Trackers, 2 = Fleet vans", "NOVA_DATA_DIR": "/x"})
    assert s.groups == {1: "Trackers", 2: "Fleet vans"}
    assert s.duckdb_path == Path("/x/nova.duckdb")
    assert parse_groups("") == {}


def test_duckdb_gets_memory_for_each_of_its_threads():
    four = load_settings({"NOVA_DUCKDB_THREADS": "4"})
    assert (four.duckdb_threads, four.duckdb_memory_mb) == (4, 512)
    own = load_settings({"NOVA_DUCKDB_THREADS": "2", "NOVA_DUCKDB_MEMORY_MB": "1024"})
    assert (own.duckdb_threads, own.duckdb_memory_mb) == (2, 1024)
    one = load_settings({"NOVA_DUCKDB_THREADS": "1"})
    assert (one.duckdb_threads, one.duckdb_memory_mb) == (1, 256)
    default = load_settings({})
    assert 1 <= default.duckdb_threads <= 4
    assert default.duckdb_memory_mb == max(256, 128 * default.duckdb_threads)


def test_duckdb_takes_at_most_four_cores_by_default(monkeypatch):
    monkeypatch.setattr(os, "cpu_count", lambda: 16)
    big = load_settings({})
    assert (big.duckdb_threads, big.duckdb_memory_mb) == (4, 512)


def test_a_lookback_of_zero_pulls_yesterday_alone():
    settings = load_settings({"NOVA_LOOKBACK_DAYS": "0"})
    tick = dt.datetime(2026, 11, 19, 1, 30, tzinfo=dt.UTC)
    day = dt.date(2026, 11, 18)
    assert days_for_tick(tick, settings.timezone, settings.lookback_days) == (day, day)


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"NOVA_GROUPS": "Trackers"}, "NOVA_GROUPS: 'Trackers' is not `<id>=<name>`"),
        ({"NOVA_GROUPS": "1=A,1=B"}, "NOVA_GROUPS: group id 1 is given twice"),
        (
            {"NOVA_GROUPS": "1=A,9223372036854775808=B"},
            "NOVA_GROUPS: group id 9223372036854775808 is beyond a 64-bit integer",
        ),
        ({"NOVA_GROUPS": "1=Trackers,2="}, "NOVA_GROUPS: '2=' is not `<id>=<name>`"),
        ({"NOVA_TIMEZONE": "Mars/Olympus"}, "NOVA_TIMEZONE: 'Mars/Olympus' is not a known"),
        ({"NOVA_START_DATE": "2999-01-01"}, "NOVA_START_DATE: 2999-01-01 is not in the past"),
        ({"NOVA_START_DATE": "01.01.2024"}, "NOVA_START_DATE: '01.01.2024' is not a date"),
        ({"NOVA_API_URL": "ftp://x"}, "NOVA_API_URL: 'ftp://x' is not an http(s) URL"),
        ({"NOVA_API_URL": "https:///api"}, "NOVA_API_URL: 'https:///api' is not an http(s) URL"),
        ({"NOVA_PAGE_SIZE": "lots"}, "NOVA_PAGE_SIZE: 'lots' is not a whole number"),
        ({"NOVA_PAGE_SIZE": "0"}, "NOVA_PAGE_SIZE: 0 is below the minimum 1"),
        ({"NOVA_SCHEDULE_TIME": "25:00"}, "NOVA_SCHEDULE_TIME: '25:00' is not a time of day"),
        ({"NOVA_REJECT_ERROR_SHARE": "2"}, "NOVA_REJECT_ERROR_SHARE: 2.0 must be below 1"),
        ({"NOVA_REJECT_ERROR_SHARE": "1"}, "NOVA_REJECT_ERROR_SHARE: 1.0 must be below 1"),
        ({"NOVA_READ_TIMEOUT": "0"}, "NOVA_READ_TIMEOUT: 0.0 must be positive"),
        ({"NOVA_RETRY_DEADLINE": "soon"}, "NOVA_RETRY_DEADLINE: 'soon' is not a number"),
        ({"NOVA_DUCKDB_THREADS": "0"}, "NOVA_DUCKDB_THREADS: 0 is below the minimum 1"),
        ({"NOVA_DUCKDB_MEMORY_MB": "32"}, "NOVA_DUCKDB_MEMORY_MB: 32 is below the minimum 64"),
        ({"NOVA_DUCKDB_LOCK_WAIT": "-5"}, "NOVA_DUCKDB_LOCK_WAIT: -5.0 must be positive"),
        ({"NOVA_AUTH_HEADER": "X Api Key"}, "NOVA_AUTH_HEADER: 'X Api Key' is not an HTTP"),
        ({"NOVA_AUTH_SCHEME": "Bearer\t"}, "NOVA_AUTH_SCHEME: 'Bearer\\t' holds a character"),
        ({"NOVA_API_CHARSET": "cyrillic-ish"}, "NOVA_API_CHARSET: 'cyrillic-ish' is not a known"),
        (
            {"NOVA_API_LONE_SURROGATES": "mend"},
            "NOVA_API_LONE_SURROGATES: 'mend' is neither 'fail' (stop at a page holding half",
        ),
    ],
)
def test_a_bad_setting_names_itself(env, message):
    with pytest.raises(SettingsError) as error:
        load_settings(env)
    assert message in str(error.value)


def test_a_page_holding_half_a_character_stops_the_pull_unless_replace_is_set_in_any_case():
    assert load_settings({}).api_lone_surrogates == "fail"
    assert load_settings({"NOVA_API_LONE_SURROGATES": " Replace "}).api_lone_surrogates == "replace"


def test_the_first_partition_must_be_a_day_that_has_ended_in_the_provider_time_zone():
    today = dt.datetime.now(ZoneInfo("Asia/Almaty")).date()
    with pytest.raises(SettingsError, match=f"NOVA_START_DATE: {today} is not in the past"):
        load_settings({"NOVA_START_DATE": today.isoformat()})
    yesterday = today - dt.timedelta(days=1)
    assert load_settings({"NOVA_START_DATE": yesterday.isoformat()}).start_date == yesterday


def test_every_setting_of_the_api_and_warehouse_reaches_its_resource(tmp_path):
    """A setting read but not passed on would be ignored in silence: each non-default value
    is found on the resource, and on the client and connection it hands out (the
    connection set to UTC, not the machine's zone: TIMESTAMPTZ is shown in it; insertion
    order not kept, so a day streams within the memory cap; no progress bar on stdout)."""
    settings = load_settings(
        {
            "NOVA_API_URL": "https://api.example.kz/api",
            "NOVA_API_TOKEN": "s3cret",
            "NOVA_AUTH_HEADER": "X-Api-Key",
            "NOVA_AUTH_SCHEME": "",
            "NOVA_API_CHARSET": "windows-1251",
            "NOVA_API_LONE_SURROGATES": "replace",
            "NOVA_PAGE_SIZE": "250",
            "NOVA_MAX_PAGES": "77",
            "NOVA_CONNECT_TIMEOUT": "3",
            "NOVA_READ_TIMEOUT": "9",
            "NOVA_MAX_ATTEMPTS": "4",
            "NOVA_RETRY_DEADLINE": "45",
            "NOVA_FETCH_CONCURRENCY": "2",
            "NOVA_GROUPS": "7=Trackers,9=Vans",
            "NOVA_DATA_DIR": str(tmp_path / "data"),
            "NOVA_DUCKDB_PATH": str(tmp_path / "elsewhere.duckdb"),
            "NOVA_DUCKDB_THREADS": "1",
            "NOVA_DUCKDB_MEMORY_MB": "300",
            "NOVA_DUCKDB_LOCK_WAIT": "600",
        }
    )
    resources = build_resources(settings)
    api = resources["nova_api"]
    assert api.api_token == dg.EnvVar("NOVA_API_TOKEN"), "the token is read at run time only"
    client = NovaApiResource(**{**api.model_dump(), "api_token": "s3cret"}).client()
    assert str(client.endpoint.url) == "https://api.example.kz/api/report/call_sms"
    assert client.endpoint._headers["X-Api-Key"] == "s3cret"
    assert client.endpoint._timeout == httpx.Timeout(9, connect=3).as_dict()
    assert (client.config.page_size, client.config.max_pages) == (250, 77)
    assert client.config.charset == "windows-1251"
    assert client.config.lone_surrogates == "replace"
    assert (client.config.retry.max_attempts, client.config.retry.deadline_s) == (4, 45)
    assert api.fetch_concurrency == 2
    assert resources["fleet_groups"].as_map() == {7: "Trackers", 9: "Vans"}
    assert resources["landing_zone"].landing().root == tmp_path / "data" / "landing" / "call_sms"
    warehouse = resources["duckdb"]
    assert warehouse.lock_wait_s == 600
    with warehouse.get_connection() as con:
        assert con.execute(
            "SELECT current_setting('threads'), current_setting('memory_limit'), "
            "current_setting('TimeZone'), current_setting('preserve_insertion_order'), "
            "current_setting('enable_progress_bar_print')"
        ).fetchone() == (1, "286.1 MiB", "UTC", False, False)
    assert (tmp_path / "elsewhere.duckdb").exists()


def test_every_variable_read_is_in_the_readme_table():
    """An operator learns the settings from the README's table: each variable that
    `load_settings` reads is there, and the table names none it does not read."""

    asked: set[str] = set()

    class Recording(dict):
        def get(self, key, default=None):
            asked.add(key)
            return super().get(key, default)

    load_settings(Recording())
    readme = (Path(__file__).parents[1] / "README.md").read_text()
    rows = re.findall(r"^\| `(NOVA_\w+)`(?: / `(NOVA_\w+)`)? \|", readme, re.MULTILINE)
    assert {name for row in rows for name in row if name} == asked
