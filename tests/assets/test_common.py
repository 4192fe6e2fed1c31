"""How the assets' metadata shows figures in the UI: tables and euro."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal

from nova_pipeline.assets.common import euro, markdown_table


def test_a_metadata_table_has_a_rule_under_as_many_columns_as_its_header():
    table = markdown_table(["day", "events", "€"], [(dt.date(2026, 11, 20), 3, "1.50")])
    assert table.value == "| day | events | € |\n|---|---|---|\n| 2026-11-20 | 3 | 1.50 |"


def test_euro_is_shown_to_the_cent_with_thousands_separated():
    assert euro(Decimal("1234.567891")) == "1,234.57"
    assert euro(Decimal("0.004999")) == "0.00"
    assert euro(None) == "0.00"
