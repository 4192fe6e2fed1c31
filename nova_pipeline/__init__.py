"""NovaConnect call/SMS/USSD costs: a Dagster code location over a DuckDB warehouse."""

import warnings

import dagster as dg

# Deliberate choices, documented in docs/design.md: BackfillPolicy (beta) batches days into
# few runs, and partitioned asset checks (preview) tie each check to the days it evaluates.
warnings.filterwarnings("ignore", category=dg.BetaWarning)
warnings.filterwarnings("ignore", category=dg.PreviewWarning)
