"""The one job: every asset and check of the graph, for a day or a batch of days."""

import dagster as dg

from nova_pipeline.partitions import DAILY

call_sms_job = dg.define_asset_job(
    name="call_sms_job",
    selection=dg.AssetSelection.all(include_sources=False),
    partitions_def=DAILY,
    description=(
        "Pull NovaConnect call/SMS/USSD records for the selected provider days, load them "
        "into DuckDB and roll them up into per-SIM and per-group daily cost, with checks."
    ),
)
