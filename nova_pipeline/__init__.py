"""NovaConnect call/SMS/USSD costs: a Dagster code location over a DuckDB warehouse."""
