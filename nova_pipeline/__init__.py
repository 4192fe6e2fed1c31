"""NovaConnect call/SMS/USSD costs: a Dagster code location over a DuckDB warehouse."""

import warnings

import dagster as dg

# Deliberate choices, documented in docs/design.md: BackfillPolicy (beta) batches days into
# few runs, partitioned asset checks (preview) tie each check to the days it evaluates, and
# the time-partition freshness checks (superseded) are the partition-aware ones.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)
warnings.filterwarnings("ignore", category=dg.SupersessionWarning)
