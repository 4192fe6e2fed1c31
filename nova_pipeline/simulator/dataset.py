"""The simulated fleet and its events, generated deterministically from a seed.

A day's events are generated once, with numpy, and rendered once into the exact JSON
bytes of each item; a request only slices and joins those bytes. That keeps the
simulator far faster than any client, so it never limits a benchmark.

The provider's clock: the daily sync at `sync_hour` local time on day L publishes day
L-1, plus the late records of L-2 and L-3 and the re-ratings due that day. A day with
k syncs behind it (k = L - D) therefore has one of three states (k = 1, 2, >= 3).
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import OrderedDict
from dataclasses import dataclass
from threading import Lock
from zoneinfo import ZoneInfo

import numpy as np

EVENT_TYPES = ("call", "in_sms", "out_sms", "ussd")
TYPE_SHARES = (0.25, 0.30, 0.30, 0.15)
LATE_SHARE = 0.01
RERATE_SHARE = 0.005
SID_DAY_STRIDE = 100_000_000
"""sid = day ordinal x stride + rank in the day: unique across the account, ordered by time."""
MAX_SYNC_STATE = 3
KINDS_OF_SIM = ("Tracker", "Van", "Meter", "Gate")


def luhn_check_digit(digits: str) -> str:
    """The digit that makes `digits + d` pass the Luhn check (as real ICCIDs do)."""
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch)
        if i % 2 == 0:
            d *= 2
            if d > 9:
                d -= 9
        total += d
    return str((10 - total % 10) % 10)


def euro_text(micros: int) -> bytes:
    """Micro-euros as the shortest JSON number that denotes them exactly."""
    whole, frac = divmod(micros, 1_000_000)
    if frac == 0:
        return b"%d.0" % whole
    return (b"%d.%06d" % (whole, frac)).rstrip(b"0")


def _rng(seed: int, *parts: object) -> np.random.Generator:
    digest = hashlib.blake2b(repr((seed, *parts)).encode(), digest_size=8).digest()
    return np.random.default_rng(int.from_bytes(digest, "little"))


@dataclass(frozen=True)
class FleetSpec:
    seed: int = 1
    sims: int = 500
    groups: int = 6
    events_per_sim_day: float = 20.0
    timezone: str = "Asia/Almaty"
    sync_hour: int = 4


@dataclass(frozen=True)
class Sim:
    id: int
    number: str
    iccid: str
    name: str | None
    group_id: int | None


def build_fleet(spec: FleetSpec) -> list[Sim]:
    """SIMs with ids from 1001; about 15% belong to no group, groups are disjoint."""
    rng = _rng(spec.seed, "fleet")
    sims = []
    for i in range(spec.sims):
        sim_id = 1001 + i
        number = f"+7701{rng.integers(0, 10_000_000):07d}"
        digits = rng.integers(0, 10, 11 + int(rng.integers(0, 2)))
        body = "8970199" + "".join(str(d) for d in digits)
        iccid = body + luhn_check_digit(body)
        name = None if rng.random() < 0.1 else f"{KINDS_OF_SIM[i % 4]}-{sim_id}"
        group = None
        if spec.groups and rng.random() >= 0.15:
            group = int(rng.integers(1, spec.groups + 1))
        sims.append(Sim(sim_id, number, iccid, name, group))
    return sims


@dataclass
class DayEvents:
    """One provider day, all its events (visible or not yet), rendered once."""

    day: dt.date
    sim_index: np.ndarray
    items: list[bytes]
    rerated_items: dict[int, bytes]
    arrival: np.ndarray
    """How many syncs after the day an event first appears (1, or 2-3 when late)."""
    rerate_at: np.ndarray
    """Sync count from which a re-rated event carries its new cost (0: never re-rated)."""

    def view(self, syncs: int) -> tuple[list[bytes], np.ndarray]:
        """Items visible after `syncs` syncs, in sid order, and their SIM indexes."""
        visible = np.flatnonzero(self.arrival <= syncs)
        rerated = set(np.flatnonzero((self.rerate_at > 0) & (self.rerate_at <= syncs)).tolist())
        items = self.items
        rendered = [self.rerated_items[i] if i in rerated else items[i] for i in visible.tolist()]
        return rendered, self.sim_index[visible]


class Dataset:
    """The fleet, its days (generated on demand, cached) and the provider's sync clock."""

    def __init__(self, spec: FleetSpec, cache_days: int = 8) -> None:
        self.spec = spec
        self.tz = ZoneInfo(spec.timezone)
        self.sims = build_fleet(spec)
        self._sim_parts = [
            b'"id":%d,"original_number":"%s","iccid":"%s","name":%s}'
            % (
                s.id,
                s.number.encode(),
                s.iccid.encode(),
                b"null" if s.name is None else b'"%s"' % s.name.encode(),
            )
            for s in self.sims
        ]
        self._days: OrderedDict[dt.date, DayEvents] = OrderedDict()
        self._views: OrderedDict[tuple, tuple[list[bytes], np.ndarray]] = OrderedDict()
        self._cache_days = cache_days
        self._lock = Lock()

    def last_sync_day(self, now: dt.datetime) -> dt.date:
        """The local date of the most recent daily sync at `now`."""
        local = now.astimezone(self.tz)
        return local.date() if local.hour >= self.spec.sync_hour else local.date() - dt.timedelta(1)

    def syncs_behind(self, day: dt.date, now: dt.datetime) -> int:
        """How many daily syncs have covered `day` (0: not visible yet), capped at 3."""
        return max(0, min(MAX_SYNC_STATE, (self.last_sync_day(now) - day).days))

    def sim_ids_in_group(self, group_id: int) -> set[int]:
        return {s.id for s in self.sims if s.group_id == group_id}

    def day_events(self, day: dt.date) -> DayEvents:
        with self._lock:
            cached = self._days.get(day)
            if cached is not None:
                self._days.move_to_end(day)
                return cached
        events = self._generate(day)
        with self._lock:
            self._days[day] = events
            while len(self._days) > self._cache_days:
                self._days.popitem(last=False)
        return events

    def visible(self, day: dt.date, now: dt.datetime) -> tuple[list[bytes], np.ndarray]:
        """The rendered items of `day` as the provider shows them at `now`."""
        syncs = self.syncs_behind(day, now)
        if syncs == 0:
            return [], np.empty(0, dtype=np.int64)
        key = (day, syncs)
        with self._lock:
            cached = self._views.get(key)
            if cached is not None:
                self._views.move_to_end(key)
                return cached
        view = self.day_events(day).view(syncs)
        with self._lock:
            self._views[key] = view
            while len(self._views) > 3 * self._cache_days:
                self._views.popitem(last=False)
        return view

    def _generate(self, day: dt.date) -> DayEvents:
        spec = self.spec
        rng = _rng(spec.seed, "day", day.toordinal())
        counts = rng.poisson(spec.events_per_sim_day, len(self.sims))
        n = int(counts.sum())
        sim_index = np.repeat(np.arange(len(self.sims)), counts)
        start = int(dt.datetime.combine(day, dt.time(), self.tz).timestamp())
        end = int(dt.datetime.combine(day + dt.timedelta(1), dt.time(), self.tz).timestamp())
        stamps = rng.integers(start, end, n)
        order = np.argsort(stamps, kind="stable")
        sim_index, stamps = sim_index[order], stamps[order]
        types = rng.choice(len(EVENT_TYPES), n, p=TYPE_SHARES)
        cost = _costs(rng, types)
        dest = rng.integers(0, 10_000_000, n)

        arrival = np.ones(n, dtype=np.int8)
        late = rng.random(n) < LATE_SHARE
        arrival[late] = rng.integers(2, 4, int(late.sum()))
        rerate_at = np.zeros(n, dtype=np.int8)
        rerate = (rng.random(n) < RERATE_SHARE) & ~late
        rerate_at[rerate] = rng.integers(2, 4, int(rerate.sum()))
        factors = rng.uniform(0.5, 1.5, n)

        first_sid = day.toordinal() * SID_DAY_STRIDE
        sims = self.sims
        parts = self._sim_parts
        type_bytes = [t.encode() for t in EVENT_TYPES]
        items: list[bytes] = []
        rerated: dict[int, bytes] = {}
        rerate_set = set(np.flatnonzero(rerate).tolist())
        for i, (si, ts, ty, c, d) in enumerate(
            zip(
                sim_index.tolist(),
                stamps.tolist(),
                types.tolist(),
                cost.tolist(),
                dest.tolist(),
                strict=True,
            )
        ):
            if ty == 1:
                to_number = sims[si].number.encode()
            elif ty == 3:
                to_number = b"*100#"
            else:
                to_number = b"+7707%07d" % d
            head = b'{"sid":%d,"date":%d,"type":"%s","to_number":"%s","session_cost":' % (
                first_sid + i,
                ts,
                type_bytes[ty],
                to_number,
            )
            items.append(head + euro_text(c) + b"," + parts[si])
            if i in rerate_set:
                new_cost = int(c * factors[i]) if c else 10_000
                rerated[i] = head + euro_text(new_cost) + b"," + parts[si]
        return DayEvents(day, sim_index, items, rerated, arrival, rerate_at)


def _costs(rng: np.random.Generator, types: np.ndarray) -> np.ndarray:
    """Cost in micro-euros: calls cost most and vary, incoming SMS are nearly always free."""
    n = len(types)
    call = np.round(rng.lognormal(-1.6, 0.9, n) * 1_000_000).astype(np.int64)
    in_sms = np.where(rng.random(n) < 0.95, 0, 10_000)
    out_sms = rng.integers(20_000, 60_001, n)
    ussd = np.where(rng.random(n) < 0.7, 0, rng.integers(1_000, 10_001, n))
    return np.choose(types, [call, in_sms, out_sms, ussd]).astype(np.int64)
