"""The code location: every asset, check, job, schedule, sensor and resource, in one place."""

from __future__ import annotations

import dagster as dg

from nova_pipeline.assets.costs import group_daily_cost, sim_daily_cost
from nova_pipeline.assets.events import call_sms_events, sim_group_membership
from nova_pipeline.assets.raw import call_sms_raw_pages
from nova_pipeline.checks import ASSET_CHECKS
from nova_pipeline.jobs import call_sms_job
from nova_pipeline.resources import build_resources
from nova_pipeline.settings import current_settings

ASSETS = [
    call_sms_raw_pages,
    call_sms_events,
    sim_group_membership,
    sim_daily_cost,
    group_daily_cost,
]

defs = dg.Definitions(
    assets=ASSETS,
    asset_checks=ASSET_CHECKS,
    jobs=[call_sms_job],
    resources=build_resources(current_settings()),
    executor=dg.in_process_executor,
)
