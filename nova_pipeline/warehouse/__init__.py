"""The DuckDB warehouse: table definitions and the replace-a-day write."""

from nova_pipeline.warehouse.schema import (
    COST,
    EVENT_TYPES,
    GRAIN,
    TABLES,
    ensure_schema,
    qualified_name,
)
from nova_pipeline.warehouse.write import replace_days

__all__ = [
    "COST",
    "EVENT_TYPES",
    "GRAIN",
    "TABLES",
    "ensure_schema",
    "qualified_name",
    "replace_days",
]
