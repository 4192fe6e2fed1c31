"""The code location: every asset, check, job, schedule, sensor and resource, in one place."""

import dagster as dg

from nova_pipeline.checks import ASSET_CHECKS
from nova_pipeline.jobs import WAREHOUSE_ASSETS, call_sms_job
from nova_pipeline.resources import build_resources
from nova_pipeline.schedules import (
    FRESHNESS_CHECKS,
    FRESHNESS_SENSOR,
    build_daily_schedule,
    build_late_sync_sensor,
)
from nova_pipeline.settings import current_settings
from nova_pipeline.stranded_runs import build_stranded_runs_sensor

ASSETS = dg.with_source_code_references(WAREHOUSE_ASSETS)
"""In data-flow order: raw pages, events (+ rejects), membership, per-SIM, per-group cost;
each linked in the UI to its function (and, from its metadata, to its SQL)."""

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=[*ASSET_CHECKS, *FRESHNESS_CHECKS],
    jobs=[call_sms_job],
    schedules=[build_daily_schedule()],
    sensors=[FRESHNESS_SENSOR, build_late_sync_sensor(), build_stranded_runs_sensor()],
    resources=build_resources(current_settings()),
    # DuckDB takes one writer, so steps cannot run in parallel anyway; in one process they
    # skip a Python start-up per step (seconds each on this machine).
    executor=dg.in_process_executor,
)
