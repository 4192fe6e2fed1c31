"""Which provider days are complete at a given moment: pure functions, shared by the
schedule, the freshness check and the demo."""

import datetime as dt
from zoneinfo import ZoneInfo


def local_time(value: str) -> dt.time:
    hours, minutes = value.split(":")
    return dt.time(int(hours), int(minutes))


def latest_complete_day(now: dt.datetime, timezone: str, ready_at: str) -> dt.date:
    """The last provider day whose data is final at `now`.

    The provider syncs once a day in the early morning: day D is complete once the sync
    of D+1 has run, which `ready_at` (local HH:MM, after the sync) stands for.
    """
    local = now.astimezone(ZoneInfo(timezone))
    today = local.date()
    return today - dt.timedelta(days=1 if local.time() >= local_time(ready_at) else 2)
