"""Every setting of the pipeline, read from the environment in one place.

Each setting is an environment variable with a default that runs the demo against the
built-in simulator. A bad value fails here, at load, with the variable's name, rather
than deep inside a step.
"""

from __future__ import annotations

import datetime as dt
import functools
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import get_args
from urllib.parse import urlparse
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from nova_pipeline.api import LoneSurrogates
from nova_pipeline.api.models import INT64_RANGE

DEFAULT_API_URL = "http://127.0.0.1:8765/api"
"""The simulator's address when started with `make simulator`."""

DEFAULT_TIMEZONE = "Asia/Almaty"
"""The provider's reporting day (UTC+5); the contract's assumption."""


DUCKDB_MAX_DEFAULT_THREADS = 4
"""DuckDB's threads by default: the machine's cores, at most this many (the events insert
gains little beyond, and each thread needs its own memory)."""

DUCKDB_MEMORY_MB_PER_THREAD = 128
DUCKDB_MIN_DEFAULT_MEMORY_MB = 256
"""Reading a day's pages takes about 100 MB a thread, over a base: a 1M-item day ran out
of memory with 1 thread at 128 MB, 2 at 192 MB, 4 at 384 MB and 8 at 512 MB, and passed
with 1 at 192 MB, 2 at 256, 4 at 512 and 8 at 768 MB."""


class SettingsError(ValueError):
    """A setting has a value the pipeline cannot use; the message names the variable."""


@dataclass(frozen=True)
class Settings:
    """Every setting, parsed; the defaults here are the only ones (`load_settings` and the
    resources take theirs from this class). DuckDB's threads and memory default by the
    machine's cores instead, in `load_settings`."""

    api_url: str = DEFAULT_API_URL
    api_token: str = field(default="", repr=False)
    auth_header: str = "Authorization"
    auth_scheme: str = "Bearer"
    api_charset: str = ""
    api_lone_surrogates: LoneSurrogates = "fail"
    page_size: int = 1000
    max_pages: int = 100_000
    connect_timeout_s: float = 10.0
    read_timeout_s: float = 60.0
    max_attempts: int = 8
    retry_deadline_s: float = 600.0
    fetch_concurrency: int = 4
    timezone: str = DEFAULT_TIMEZONE
    start_date: dt.date = dt.date(2024, 1, 1)
    groups: Mapping[int, str] = field(default_factory=dict)
    data_dir: Path = Path("data")
    duckdb_path: Path = Path("data/nova.duckdb")
    duckdb_threads: int = 2
    duckdb_memory_mb: int = 256
    duckdb_lock_wait_s: float = 120.0
    lookback_days: int = 3
    schedule_time: str = "06:30"
    freshness_deadline: str = "09:00"
    backfill_days_per_run: int = 31
    reject_error_share: float = 0.01

    @property
    def landing_dir(self) -> Path:
        return self.data_dir / "landing"


def parse_groups(text: str, variable: str = "NOVA_GROUPS") -> dict[int, str]:
    """`1=Trackers,2=Fleet` -> {1: 'Trackers', 2: 'Fleet'}; empty means no groups."""
    groups: dict[int, str] = {}
    for part in filter(None, (p.strip() for p in text.split(","))):
        match = re.fullmatch(r"(\d+)\s*=\s*(\S(?:.*\S)?)", part)
        if not match:
            raise SettingsError(
                f"{variable}: {part!r} is not `<id>=<name>` (expected e.g. `1=Trackers,2=Fleet`)"
            )
        group_id = int(match.group(1))
        if group_id > INT64_RANGE[1]:
            raise SettingsError(
                f"{variable}: group id {group_id} is beyond a 64-bit integer, the largest "
                "id the warehouse stores"
            )
        if group_id in groups:
            raise SettingsError(f"{variable}: group id {group_id} is given twice")
        groups[group_id] = match.group(2)
    return groups


def _int(env: Mapping[str, str], name: str, default: int, minimum: int = 1) -> int:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise SettingsError(f"{name}: {raw!r} is not a whole number") from None
    if value < minimum:
        raise SettingsError(f"{name}: {value} is below the minimum {minimum}")
    return value


def _float(env: Mapping[str, str], name: str, default: float) -> float:
    raw = env.get(name)
    if raw is None or raw.strip() == "":
        return default
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name}: {raw!r} is not a number") from None
    if value <= 0:
        raise SettingsError(f"{name}: {value} must be positive")
    return value


def _clock_time(env: Mapping[str, str], name: str, default: str) -> str:
    raw = env.get(name) or default
    if not re.fullmatch(r"([01]\d|2[0-3]):[0-5]\d", raw):
        raise SettingsError(f"{name}: {raw!r} is not a time of day HH:MM")
    return raw


def _timezone(env: Mapping[str, str]) -> str:
    name = env.get("NOVA_TIMEZONE") or DEFAULT_TIMEZONE
    try:
        ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError):
        raise SettingsError(
            f"NOVA_TIMEZONE: {name!r} is not a known IANA time zone (e.g. Asia/Almaty)"
        ) from None
    return name


def _start_date(env: Mapping[str, str], timezone: str) -> dt.date:
    raw = env.get("NOVA_START_DATE") or Settings.start_date.isoformat()
    try:
        value = dt.date.fromisoformat(raw)
    except ValueError:
        raise SettingsError(f"NOVA_START_DATE: {raw!r} is not a date YYYY-MM-DD") from None
    today = dt.datetime.now(ZoneInfo(timezone)).date()
    if value >= today:
        raise SettingsError(
            f"NOVA_START_DATE: {value} is not in the past (today is {today} in {timezone}); "
            "the first partition must be a day that has ended"
        )
    return value


def _api_url(env: Mapping[str, str]) -> str:
    """The URL is logged and stored with each page's request, so it may not carry a
    password (`user:pass@host`), and one that does is not shown."""
    raw = (env.get("NOVA_API_URL") or DEFAULT_API_URL).rstrip("/")
    parsed = urlparse(raw)
    if parsed.username is not None or parsed.password is not None:
        raise SettingsError(
            "NOVA_API_URL holds a user name or password (user:pass@host), which would reach "
            "the logs and the raw pages table: give the token in NOVA_API_TOKEN (the value "
            "is not shown)"
        )
    if parsed.scheme not in ("http", "https") or not parsed.netloc:
        raise SettingsError(f"NOVA_API_URL: {raw!r} is not an http(s) URL")
    return raw


HEADER_NAME = re.compile(r"[!#$%&'*+.^_`|~0-9A-Za-z-]+")
"""An HTTP header name (RFC 9110 token)."""

HEADER_TEXT = re.compile(r"[\x21-\x7e](?:[\x20-\x7e]*[\x21-\x7e])?")
"""What the auth header's value may hold: printable ASCII, blanks only inside."""


def _auth(env: Mapping[str, str]) -> tuple[str, str, str]:
    """(header, scheme, token). A character a header cannot carry would otherwise fail
    every request as a connection error, or raise from the encoder; the token is checked
    without blanks around it (the client drops them) and never shown."""
    header = env.get("NOVA_AUTH_HEADER") or Settings.auth_header
    if not HEADER_NAME.fullmatch(header):
        raise SettingsError(f"NOVA_AUTH_HEADER: {header!r} is not an HTTP header name")
    scheme = env.get("NOVA_AUTH_SCHEME", Settings.auth_scheme)
    if scheme and not HEADER_TEXT.fullmatch(scheme):
        raise SettingsError(
            f"NOVA_AUTH_SCHEME: {scheme!r} holds a character an HTTP header cannot carry"
        )
    token = env.get("NOVA_API_TOKEN", "").strip()
    bad = next((n for n, c in enumerate(token, 1) if not " " <= c <= "~"), None)
    if bad is not None:
        raise SettingsError(
            f"NOVA_API_TOKEN: character {bad} of {len(token)} is a control character or "
            "not ASCII, which an HTTP header cannot carry (the value is not shown)"
        )
    return header, scheme, token


def _charset(env: Mapping[str, str]) -> str:
    """The charset of a body whose Content-Type names none, when it is not UTF-8; empty
    when the provider keeps to UTF-8, as JSON requires. Encoding a letter refuses both an
    unknown name and a codec that is no charset (`rot13`, `base64`), which `bytes.decode`
    would refuse at the first page instead."""
    name = env.get("NOVA_API_CHARSET", "").strip()
    if name:
        try:
            "x".encode(name)
        except LookupError:
            raise SettingsError(
                f"NOVA_API_CHARSET: {name!r} is not a known charset (e.g. windows-1251)"
            ) from None
    return name


def _lone_surrogates(env: Mapping[str, str]) -> LoneSurrogates:
    """Whether a page holding half a character stops the pull (the default: it cannot land
    as sent) or is read with U+FFFD in that place."""
    raw = env.get("NOVA_API_LONE_SURROGATES", "").strip().lower() or Settings.api_lone_surrogates
    if raw not in get_args(LoneSurrogates):
        raise SettingsError(
            f"NOVA_API_LONE_SURROGATES: {raw!r} is neither 'fail' (stop at a page holding half "
            "a character) nor 'replace' (read it with U+FFFD in that place)"
        )
    return raw


@functools.cache
def current_settings() -> Settings:
    """The settings of this process, read from the environment on first use."""
    return load_settings()


def load_settings(env: Mapping[str, str] | None = None) -> Settings:
    """Read and validate every `NOVA_*` variable once."""
    env = os.environ if env is None else env
    timezone = _timezone(env)
    data_dir = Path(env.get("NOVA_DATA_DIR") or Settings.data_dir)
    threads = _int(env, "NOVA_DUCKDB_THREADS", min(os.cpu_count() or 1, DUCKDB_MAX_DEFAULT_THREADS))
    share = _float(env, "NOVA_REJECT_ERROR_SHARE", Settings.reject_error_share)
    if share >= 1:
        raise SettingsError(f"NOVA_REJECT_ERROR_SHARE: {share} must be below 1")
    auth_header, auth_scheme, api_token = _auth(env)
    return Settings(
        api_url=_api_url(env),
        api_token=api_token,
        auth_header=auth_header,
        auth_scheme=auth_scheme,
        api_charset=_charset(env),
        api_lone_surrogates=_lone_surrogates(env),
        page_size=_int(env, "NOVA_PAGE_SIZE", Settings.page_size),
        max_pages=_int(env, "NOVA_MAX_PAGES", Settings.max_pages),
        connect_timeout_s=_float(env, "NOVA_CONNECT_TIMEOUT", Settings.connect_timeout_s),
        read_timeout_s=_float(env, "NOVA_READ_TIMEOUT", Settings.read_timeout_s),
        max_attempts=_int(env, "NOVA_MAX_ATTEMPTS", Settings.max_attempts),
        retry_deadline_s=_float(env, "NOVA_RETRY_DEADLINE", Settings.retry_deadline_s),
        fetch_concurrency=_int(env, "NOVA_FETCH_CONCURRENCY", Settings.fetch_concurrency),
        timezone=timezone,
        start_date=_start_date(env, timezone),
        groups=parse_groups(env.get("NOVA_GROUPS", "")),
        data_dir=data_dir,
        duckdb_path=Path(env.get("NOVA_DUCKDB_PATH") or data_dir / "nova.duckdb"),
        duckdb_threads=threads,
        duckdb_memory_mb=_int(
            env,
            "NOVA_DUCKDB_MEMORY_MB",
            max(DUCKDB_MIN_DEFAULT_MEMORY_MB, DUCKDB_MEMORY_MB_PER_THREAD * threads),
            minimum=64,
        ),
        duckdb_lock_wait_s=_float(env, "NOVA_DUCKDB_LOCK_WAIT", Settings.duckdb_lock_wait_s),
        lookback_days=_int(env, "NOVA_LOOKBACK_DAYS", Settings.lookback_days, minimum=0),
        schedule_time=_clock_time(env, "NOVA_SCHEDULE_TIME", Settings.schedule_time),
        freshness_deadline=_clock_time(env, "NOVA_FRESHNESS_DEADLINE", Settings.freshness_deadline),
        backfill_days_per_run=_int(
            env, "NOVA_BACKFILL_DAYS_PER_RUN", Settings.backfill_days_per_run
        ),
        reject_error_share=share,
    )
