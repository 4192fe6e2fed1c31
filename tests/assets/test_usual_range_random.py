"""The usual-range checks against their own description, on random histories. The
description of `daily_volume_usual`, `cost_per_event_usual` and `group_volume_usual` (and
the constants of `nova_pipeline/checks.py` it names) is read again here in plain Python,
and each must flag the same rows with the same figures on random fleets: types and groups
at random volumes and prices, quiet weekends or none, days missing, types dropping out or
jumping, groups not pulled some days, runs of one day or several. The hand-made cases of
`test_volume_check.py`, `test_price_check.py` and `test_group_volume_check.py` say why
each rule is there; these check that the SQL does what they say everywhere else."""

from __future__ import annotations

import datetime as dt
import random
import statistics
from decimal import Decimal

import duckdb
import pytest

from nova_pipeline.checks import (
    HISTORY_DAYS,
    MIN_HISTORY_DAYS,
    MIN_USUAL_EVENTS,
    MIN_WEEKS,
    PRECISION,
    WARN_SHARE,
    WEEKS,
    cost_per_event_usual,
    daily_volume_usual,
    group_volume_usual,
)
from tests.conftest import store_events, store_groups

TYPES = ("call", "in_sms", "out_sms", "ussd")
Events = list[tuple[int, str, str]]
"""A day's events as `store_events` takes them: (how many, of which type, euro each)."""


def random_fleet(rng: random.Random) -> tuple[dict[dt.date, Events], list[dt.date]]:
    """Up to 60 days of a random fleet, and the days of a run judged on it."""
    start = dt.date(2026, 9, 1) + dt.timedelta(days=rng.randrange(7))
    days = [start + dt.timedelta(days=n) for n in range(rng.randint(5, 60))]
    used = rng.sample(TYPES, rng.choice([1, 2, 4, 4]))
    volume = {t: rng.choice([0, 5, 50, 90, 120, 200, 400]) if t in used else 0 for t in TYPES}
    prices = {t: rng.choice(["0", "0.04", "0.077939", "0.30"]) for t in TYPES}
    weekend = rng.choice([1.0, 1.0, 0.3, 0.5])
    stored: dict[dt.date, Events] = {}
    for day in days:
        if rng.random() < 0.08:
            continue  # not pulled, or pulled empty
        events: Events = []
        for t in TYPES:
            scale = (weekend if day.isoweekday() >= 6 else 1.0) * rng.choice(
                [1, 1, 1, 0.9, 1.1, 0.45, 2.1, 0, 3]
            )
            n = int(volume[t] * scale)
            price = prices[t] if rng.random() < 0.9 else rng.choice(["0.01", "0.12", "3"])
            dear = rng.randrange(n + 1) if rng.random() < 0.2 else 0
            events += [(count, t, p) for count, p in ((n - dear, price), (dear, "1.5")) if count]
        stored[day] = events or [(1, "call", "0")]  # all but empty
    first = rng.randrange(len(days))
    last = min(len(days) - 1, first + rng.choice([0, 0, 2, 10]))
    return stored, days[first : last + 1]


def random_groups(
    rng: random.Random,
) -> tuple[dict[dt.date, dict[int | None, int]], dict[int, str], list[dt.date]]:
    """Up to 60 days of a random fleet's group rows (None: the ungrouped SIMs), the groups'
    names, and the days of a run judged on them. A group has no row on a day it was not
    pulled; a day none was pulled has the ungrouped row alone, or no row at all."""
    start = dt.date(2026, 9, 1) + dt.timedelta(days=rng.randrange(7))
    days = [start + dt.timedelta(days=n) for n in range(rng.randint(5, 60))]
    ids = rng.sample([1, 2, 3, 7], rng.randint(1, 3))
    chosen = rng.sample(["Vans", "Meters", "Trackers", "Gates"], len(ids))
    names = dict(zip(ids, chosen, strict=True))
    volume = {g: rng.choice([0, 30, 90, 100, 150, 180, 400, 2000]) for g in [*ids, None]}
    weekend = rng.choice([1.0, 0.3, 0.5])
    absent = rng.choice([0.0, 0.1, 0.3])
    stored: dict[dt.date, dict[int | None, int]] = {}
    for day in days:
        if rng.random() < 0.08:
            continue  # not pulled
        scale = weekend if day.isoweekday() >= 6 else 1.0
        rows = {
            g: int(volume[g] * scale * rng.choice([1, 1, 1, 0.9, 1.1, 0.45, 2.1, 0, 3]))
            for g in [*ids, None]
            if g is None or rng.random() >= absent
        }
        stored[day] = rows if rng.random() >= 0.03 else {None: rows[None]}
    first = rng.randrange(len(days))
    last = min(len(days) - 1, first + rng.choice([0, 0, 2, 10]))
    return stored, names, days[first : last + 1]


def rounded(x: float, places: int) -> float:
    return float(round(Decimal(x), places))


def counts(events: Events) -> dict[str | None, float | None]:
    """The figures of a day's rows for the volume check: None for the whole day."""
    by_type: dict[str | None, float | None] = {}
    for n, t, _ in events:
        by_type[t] = (by_type.get(t) or 0) + n
    return {None: sum(n for n, _, _ in events), **by_type}


def average_costs(events: Events) -> dict[str | None, float | None]:
    """The price check's figures: a day's or a type's average cost of an event, or None
    where its standard error is more than PRECISION of it (not judged)."""

    def average(rows: Events) -> float | None:
        n = sum(count for count, _, _ in rows)
        mean = sum(count * Decimal(price) for count, _, price in rows) / n
        if n < 2:
            return None
        squares = sum(count * (Decimal(price) - mean) ** 2 for count, _, price in rows)
        if (squares / (n - 1) / n).sqrt() > Decimal(PRECISION) * mean:
            return None
        return rounded(float(mean), 6)

    types = {t for _, t, _ in events}
    return {None: average(events)} | {t: average([e for e in events if e[1] == t]) for t in types}


def usual_range_rows(
    figures: dict[dt.date, dict[str | None, float | None]],
    judged: list[dt.date],
    of_no_event: float | None,
    part_floor: float,
    few: bool,
    unit: float,
    whole: bool = True,
) -> list[tuple[tuple, bool]]:
    """The detail rows the description asks for, each with whether it is certain: a row
    whose verdict changes when its figure or medians move by `unit` (the last place they
    are rounded to) may go either way. `figures`: each stored day's figure of the whole
    day (key None) and of each part (type, group), None where not judgeable; a day with no
    row is not in it. Without `whole`, only the parts are judged, each alone of its day
    judged too."""

    def history(day: dt.date, part: str | None) -> tuple[list[float], list[float]]:
        """Its judgeable figures of the HISTORY_DAYS before, and of the same weekday in
        the WEEKS before."""
        stored = {d: f[part] for d, f in figures.items() if f.get(part) is not None}
        recent = [v for d, v in stored.items() if 1 <= (day - d).days <= HISTORY_DAYS]
        weekday = [v for d, v in stored.items() if (day - d).days in range(7, 7 * WEEKS + 1, 7)]
        return recent, weekday

    def median(values: list[float]) -> float | None:
        return rounded(statistics.median(values), 6) if values else None

    def in_band(figure: float, usual: float) -> bool:
        return usual * WARN_SHARE <= figure <= usual / WARN_SHARE

    def failing(
        part: str | None,
        parts_of_day: int,
        weeks_known: bool,
        figure: float,
        usual: float,
        weekday_usual: float | None,
    ) -> bool:
        if part is None:
            return not in_band(figure, usual) and not (
                weeks_known and in_band(figure, weekday_usual)
            )
        return (
            not in_band(figure, usual)
            and not (weeks_known and (in_band(figure, weekday_usual) or weekday_usual < part_floor))
            and usual >= part_floor
            and (parts_of_day > 1 or not whole)
        )

    rows = []
    for day in judged:
        targets: list[str | None] = [None] if whole else []
        if day in figures:
            targets += sorted(
                {
                    part
                    for d, f in figures.items()
                    if 0 <= (day - d).days <= HISTORY_DAYS
                    for part, value in f.items()
                    if part is not None and value is not None
                }
            )
        parts_of_day = len(targets) - whole
        for part in targets:
            today = figures.get(day, {})
            figure = today[part] if today.get(part) is not None else of_no_event
            recent, weekday = history(day, part)
            usual, weekday_usual = median(recent), median(weekday)
            weeks_known = len(weekday) >= MIN_WEEKS

            if figure is None:
                verdicts = {False}
            elif len(recent) < MIN_HISTORY_DAYS:
                verdicts = {part is None and few and figure == 0}
            else:
                moves = (-unit, 0, unit)
                verdicts = {
                    failing(
                        part,
                        parts_of_day,
                        weeks_known,
                        figure + a,
                        usual + b,
                        weekday_usual and weekday_usual + c,
                    )
                    for a in moves
                    for b in moves
                    for c in moves
                }
            if True in verdicts:
                row = (
                    day,
                    part or "all",
                    figure,
                    "-" if usual is None else usual,
                    len(recent),
                    rounded(figure / usual, 2) if usual else "-",
                    weekday_usual if weeks_known else "-",
                )
                rows.append((row, verdicts == {True}))
    return rows


RATIO = 5
"""The detail's column rounded to 2 places; its other figures are rounded to 6."""


def same_rows(got: list[tuple], expected: list[tuple[tuple, bool]]) -> bool:
    """`got` holds every certain row of `expected` and no other but uncertain ones, in
    order, figures within a unit of their last place (DuckDB and Python may round a
    double that is all but a tie apart)."""

    def same(column: int, a: object, b: object) -> bool:
        if isinstance(b, float):
            return abs(float(a) - b) <= 1.1 * (0.01 if column == RATIO else 1e-6)
        return str(a) == str(b)

    rest = list(got)
    for row, certain in expected:
        if rest and len(rest[0]) == len(row) and all(map(same, range(len(row)), rest[0], row)):
            rest.pop(0)
        elif certain:
            return False
    return not rest


@pytest.mark.parametrize("seed", range(4))
def test_the_usual_range_checks_flag_what_their_description_says(tmp_path, seed):
    rng = random.Random(seed)
    flagged = {"volume": 0, "price": 0, "groups": 0}
    for fleet in range(25):
        stored, judged = random_fleet(rng)
        with duckdb.connect(str(tmp_path / f"{fleet}.duckdb")) as con:
            store_events(con, stored)
            run = (judged[0], judged[-1])
            volume = daily_volume_usual(con, run).failing
            price = cost_per_event_usual(con, run).failing
        expected_volume = usual_range_rows(
            {d: counts(e) for d, e in stored.items()},
            judged,
            of_no_event=0,
            part_floor=MIN_USUAL_EVENTS,
            few=True,
            unit=0,
        )
        expected_price = usual_range_rows(
            {d: average_costs(e) for d, e in stored.items()},
            judged,
            of_no_event=None,
            part_floor=0,
            few=False,
            unit=1e-6,
        )
        assert same_rows(volume, expected_volume), (fleet, volume, expected_volume)
        assert same_rows(price, expected_price), (fleet, price, expected_price)
        flagged["volume"] += len(volume)
        flagged["price"] += len(price)

        stored_groups, names, judged = random_groups(rng)
        with duckdb.connect(str(tmp_path / f"g{fleet}.duckdb")) as con:
            store_groups(con, stored_groups, names)
            groups = group_volume_usual(con, (judged[0], judged[-1])).failing
        expected_groups = usual_range_rows(
            {
                d: {f"{names[g]} ({g})": n for g, n in rows.items() if g is not None}
                for d, rows in stored_groups.items()
                if set(rows) != {None}
            },
            judged,
            of_no_event=None,
            part_floor=MIN_USUAL_EVENTS,
            few=False,
            unit=0,
            whole=False,
        )
        assert same_rows(groups, expected_groups), (fleet, groups, expected_groups)
        flagged["groups"] += len(groups)
    assert all(flagged.values()), f"the fleets give each check rows to flag: {flagged}"
