"""The one job: every asset and data check of the graph, for a day or a batch of days."""

import dagster as dg

from nova_pipeline.assets.costs import group_daily_cost, sim_daily_cost
from nova_pipeline.assets.events import call_sms_events, sim_group_membership
from nova_pipeline.assets.raw import call_sms_raw_pages
from nova_pipeline.checks import ASSET_CHECKS

WAREHOUSE_ASSETS = [
    call_sms_raw_pages,
    call_sms_events,
    sim_group_membership,
    sim_daily_cost,
    group_daily_cost,
]

call_sms_job = dg.define_asset_job(
    name="call_sms_job",
    selection=dg.AssetSelection.assets(*WAREHOUSE_ASSETS).without_checks()
    | dg.AssetSelection.checks(*ASSET_CHECKS),
    description=(
        "Pull NovaConnect call/SMS/USSD records for the selected provider days, load them "
        "into DuckDB and roll them up into per-SIM and per-group daily cost, with the data "
        "checks (freshness is evaluated apart, by its sensor)."
    ),
)
