"""NovaConnect call/SMS/USSD costs: a Dagster code location over a DuckDB warehouse."""

import re
import warnings

import dagster as dg

CHOSEN_FEATURES: dict[type[Warning], tuple[str, ...]] = {
    dg.BetaWarning: (
        "backfill_policy",
        "with_source_code_references",
        "LocalFileCodeReference",
        "CodeReferencesMetadataValue",
    ),
    dg.PreviewWarning: ("partitions_def on an AssetCheckSpec",),
    dg.SupersessionWarning: (
        "build_time_partition_freshness_checks",
        "build_sensor_for_freshness_checks",
    ),
}
"""Dagster features used by choice though not stable, each documented in docs/design.md:
BackfillPolicy batches days into few runs, code references link an asset to its function
and SQL, partitioned asset checks tie each check to the days it evaluates, and the
time-partition freshness checks are the partition-aware ones."""


def ignore_chosen_warnings() -> None:
    """Silence Dagster's warning for each chosen feature, and only for those: any other
    beta, preview or superseded feature still warns (and fails the tests)."""
    for category, features in CHOSEN_FEATURES.items():
        for feature in features:
            warnings.filterwarnings("ignore", f".*{re.escape(feature)}", category)


ignore_chosen_warnings()
