"""Which provider day is complete: the demo's last day, decided in the provider's time."""

from __future__ import annotations

import datetime as dt

import pytest

from nova_pipeline.clock import latest_complete_day

UTC = dt.UTC


@pytest.mark.parametrize(
    ("now", "day"),
    [
        # 06:29 in Almaty (01:29 UTC): the sync of the 20th may not have run, the 19th is
        # not final yet.
        (dt.datetime(2026, 11, 20, 1, 29, tzinfo=UTC), dt.date(2026, 11, 18)),
        # From 06:30 on, it is.
        (dt.datetime(2026, 11, 20, 1, 30, tzinfo=UTC), dt.date(2026, 11, 19)),
        # 19:00 UTC is already the 21st in Almaty, before its sync.
        (dt.datetime(2026, 11, 20, 19, 0, tzinfo=UTC), dt.date(2026, 11, 19)),
        (dt.datetime(2027, 1, 1, 1, 30, tzinfo=UTC), dt.date(2026, 12, 31)),
    ],
)
def test_a_day_is_complete_once_the_next_days_sync_has_run(now, day):
    assert latest_complete_day(now, "Asia/Almaty", "06:30") == day
