"""Where a number comes from, as the UI shows it: each asset links to its function and to
the SQL that computes its rows."""

from __future__ import annotations

from pathlib import Path

import dagster as dg
import pytest

from nova_pipeline.assets.common import sql_references
from nova_pipeline.definitions import defs
from nova_pipeline.transforms import costs

EXPECTED = {
    "call_sms_raw_pages": ("assets/raw.py", []),
    "call_sms_events": (
        "assets/events.py",
        ["CONFORMING_SQL", "REASON", "INSERT_EVENTS_SQL", "REPEATED_COPIES_SQL"],
    ),
    "call_sms_rejects": ("assets/events.py", ["REASON", "INSERT_REJECTS_SQL"]),
    "sim_group_membership": ("assets/events.py", ["MEMBERSHIP_SQL"]),
    "sim_daily_cost": ("assets/costs.py", ["SIM_DAILY_COST_SQL"]),
    "group_daily_cost": ("assets/costs.py", ["GROUP_DAILY_COST_SQL"]),
}


def _line(reference: dg.LocalFileCodeReference) -> str:
    return Path(reference.file_path).read_text().splitlines()[reference.line_number - 1]


@pytest.mark.parametrize("asset", EXPECTED)
def test_an_asset_links_to_its_function_and_to_the_lines_of_its_sql(asset):
    module, sql = EXPECTED[asset]
    metadata = defs.resolve_asset_graph().get(dg.AssetKey(asset)).metadata
    references = metadata["dagster/code_references"].code_references

    functions = [r for r in references if r.label is None]
    assert len(functions) == 1
    assert functions[0].file_path.endswith(f"nova_pipeline/{module}")
    assert _line(functions[0]).startswith("@dg.")

    statements = [r for r in references if r.label is not None]
    assert [r.label for r in statements] == sql
    for reference in statements:
        assert Path(reference.file_path).parent.name == "transforms"
        assert _line(reference).startswith(f"{reference.label} =")


def test_a_reference_to_sql_that_is_not_there_fails_at_load():
    with pytest.raises(ValueError, match=r"NO_SUCH_SQL is not assigned .*transforms/costs\.py"):
        sql_references(costs, "NO_SUCH_SQL")
