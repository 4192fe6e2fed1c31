"""Dagster resources: thin, configurable wrappers that hand out the plain-Python parts."""

import logging
import re
import time
from collections.abc import Iterator
from contextlib import contextmanager

import dagster as dg
import duckdb
from dagster_duckdb import DuckDBResource
from pydantic import Field

from nova_pipeline.api import ClientConfig, Endpoint, LoneSurrogates, NovaClient, RetryPolicy
from nova_pipeline.landing import Landing
from nova_pipeline.settings import Settings, parse_groups
from nova_pipeline.warehouse import ensure_schema


class NovaApiResource(dg.ConfigurableResource):
    """The NovaConnect API (or the simulator): where, how to authenticate, how to page."""

    api_url: str = Field(description="Base URL; the endpoint is <api_url>/report/call_sms")
    api_token: str = Field(default="", description="Sent only in the auth header, never logged")
    auth_header: str = Settings.auth_header
    auth_scheme: str = Settings.auth_scheme
    api_charset: str = Field(
        default=Settings.api_charset,
        description="How to read a body that is not UTF-8 and names no charset (NOVA_API_CHARSET)",
    )
    api_lone_surrogates: LoneSurrogates = Field(
        default=Settings.api_lone_surrogates,
        description=(
            "A body holding a lone UTF-16 surrogate escape: 'fail', or 'replace' it by U+FFFD "
            "(NOVA_API_LONE_SURROGATES)"
        ),
    )
    page_size: int = Settings.page_size
    max_pages: int = Settings.max_pages
    connect_timeout_s: float = Settings.connect_timeout_s
    read_timeout_s: float = Settings.read_timeout_s
    max_attempts: int = Settings.max_attempts
    retry_deadline_s: float = Settings.retry_deadline_s
    backoff_base_s: float = RetryPolicy.backoff_base_s
    fetch_concurrency: int = Field(
        default=Settings.fetch_concurrency, description="Days fetched at once in one run"
    )

    def client(self, logger: logging.Logger | None = None) -> NovaClient:
        endpoint = Endpoint(
            self.api_url,
            token=self.api_token,
            auth_header=self.auth_header,
            auth_scheme=self.auth_scheme,
            connect_timeout_s=self.connect_timeout_s,
            read_timeout_s=self.read_timeout_s,
        )
        retry = RetryPolicy(
            max_attempts=self.max_attempts,
            deadline_s=self.retry_deadline_s,
            backoff_base_s=self.backoff_base_s,
        )
        config = ClientConfig(
            page_size=self.page_size,
            max_pages=self.max_pages,
            retry=retry,
            charset=self.api_charset,
            lone_surrogates=self.api_lone_surrogates,
        )
        return NovaClient(endpoint, config, logger)


class FleetGroupsResource(dg.ConfigurableResource):
    """The configured SIM groups, `1=Trackers,2=Fleet` (NOVA_GROUPS)."""

    groups: str = ""

    def as_map(self) -> dict[int, str]:
        return parse_groups(self.groups)


class LandingZoneResource(dg.ConfigurableResource):
    """Where raw pages land as files (NOVA_DATA_DIR/landing)."""

    root: str

    def landing(self) -> Landing:
        return Landing(self.root)


LOCK_CONFLICT = "Could not set lock on file"
LOCK_HOLDER = re.compile(r"Conflicting lock is held in (.+? \(PID \d+\))")


class WarehouseBusyError(Exception):
    """Another process kept the DuckDB file for longer than a step waits for it."""


class WarehouseResource(DuckDBResource):
    """The DuckDB warehouse: a connection in UTC with every table in place.

    DuckDB's threads and memory are set together (NOVA_DUCKDB_THREADS, _MEMORY_MB): left
    to itself it takes a thread per core, and reading a day's pages needs about 100 MB a
    thread, so a 1M-item day ran out of memory under a fixed 256 MB cap on 4 cores. Capped
    and with insertion order not preserved, a day streams and spills instead of growing
    with the day (725 MB peak for 1M events uncapped). Its progress bar is not printed: on
    a query over 2 s DuckDB draws it on stdout, which Dagster keeps as the step's log. A
    file held by another process is waited for (NOVA_DUCKDB_LOCK_WAIT), then reported by
    name."""

    threads: int = Settings.duckdb_threads
    memory_limit_mb: int = Settings.duckdb_memory_mb
    lock_wait_s: float = Field(
        default=Settings.duckdb_lock_wait_s,
        description="How long a step waits for another process (a DuckDB session, "
        "`make demo`) to let go of the file before it fails",
    )

    def _connect(self) -> duckdb.DuckDBPyConnection:
        """Open the file for writing, waiting while another process holds it.

        DuckDB lets one process at a time open a file for writing, and any session open on
        it, even read-only, keeps the others out. The run queue only orders Dagster's own
        runs, so an analyst's session makes a step wait here, with a warning that names the
        process, then fail saying so (dagster-duckdb retried for about 100 s in silence and
        failed with DuckDB's traceback). Any other error is raised at once."""
        config = {"custom_user_agent": "dagster", **self.connection_config}
        deadline = time.monotonic() + self.lock_wait_s
        warned = False
        while True:
            try:
                return duckdb.connect(self.database, config=config)
            except duckdb.IOException as exc:
                if LOCK_CONFLICT not in str(exc):
                    raise
                held = LOCK_HOLDER.search(str(exc))
                holder = held.group(1) if held else str(exc)
            if time.monotonic() >= deadline:
                raise WarehouseBusyError(
                    f"the warehouse {self.database} stayed held by another process, "
                    f"{holder}, for the {self.lock_wait_s:.0f} s this step waited "
                    "(NOVA_DUCKDB_LOCK_WAIT). DuckDB lets one process at a time write the "
                    "file, and a session open on it, even read-only, keeps the pipeline out: "
                    "close that session (or work on a copy, README: Reading the numbers) and "
                    "re-execute the run from its failure. This step wrote nothing."
                )
            if not warned:
                dg.get_dagster_logger().warning(
                    f"the warehouse {self.database} is held by another process, {holder}: "
                    f"waiting up to {self.lock_wait_s:.0f} s for it to close the file"
                )
                warned = True
            time.sleep(max(0.0, min(1.0, deadline - time.monotonic())))

    @contextmanager
    def get_connection(self) -> Iterator[duckdb.DuckDBPyConnection]:
        with self._connect() as con:
            con.execute("SET TimeZone = 'UTC'")
            con.execute(f"SET threads = {self.threads}")
            con.execute(f"SET memory_limit = '{self.memory_limit_mb}MB'")
            con.execute("SET preserve_insertion_order = false")
            con.execute("SET enable_progress_bar_print = false")
            ensure_schema(con)
            yield con


def api_resource(
    settings: Settings, token: str | dg.EnvVar, **overrides: object
) -> NovaApiResource:
    """The API as the settings describe it, with `token` (the code location passes an EnvVar,
    so Dagster never shows its value)."""
    fields = {
        "api_url": settings.api_url,
        "api_token": token,
        "auth_header": settings.auth_header,
        "auth_scheme": settings.auth_scheme,
        "api_charset": settings.api_charset,
        "api_lone_surrogates": settings.api_lone_surrogates,
        "page_size": settings.page_size,
        "max_pages": settings.max_pages,
        "connect_timeout_s": settings.connect_timeout_s,
        "read_timeout_s": settings.read_timeout_s,
        "max_attempts": settings.max_attempts,
        "retry_deadline_s": settings.retry_deadline_s,
        "fetch_concurrency": settings.fetch_concurrency,
    }
    return NovaApiResource(**(fields | overrides))


def build_resources(settings: Settings) -> dict[str, dg.ConfigurableResource]:
    """The resources of the code location, from the settings read at load."""
    return {
        "nova_api": api_resource(
            settings, dg.EnvVar("NOVA_API_TOKEN") if settings.api_token else ""
        ),
        "fleet_groups": FleetGroupsResource(
            groups=",".join(f"{k}={v}" for k, v in settings.groups.items())
        ),
        "landing_zone": LandingZoneResource(root=str(settings.landing_dir)),
        "duckdb": WarehouseResource(
            database=str(settings.duckdb_path),
            threads=settings.duckdb_threads,
            memory_limit_mb=settings.duckdb_memory_mb,
            lock_wait_s=settings.duckdb_lock_wait_s,
        ),
    }
