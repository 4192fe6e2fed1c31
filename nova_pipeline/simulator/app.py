"""The simulated `POST /api/report/call_sms` over real HTTP (stdlib server, keep-alive).

Also two endpoints of its own, under `/_simulator/`: `GET health` and `POST clock`
(`{"now": "<ISO datetime>"}`), which moves the provider's clock so a test or a demo can
let the later syncs happen.
"""

from __future__ import annotations

import datetime as dt
import json
import re
import threading
import time
from collections import Counter, OrderedDict
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np

from nova_pipeline.simulator.dataset import Dataset, FleetSpec
from nova_pipeline.simulator.faults import (
    BAD_ITEM_KINDS,
    BYTE_ORDER_MARK,
    CYRILLIC_NAME,
    DAY_OVERLAP_ITEMS,
    EXTRA_FIELD,
    LONE_SURROGATE_NAME,
    WINDOWS_1251_NAME,
    Faults,
    bad_item,
    in_cents,
    pretty,
    renamed,
)

API_PATH = "/api/report/call_sms"
DATE_RE = re.compile(r"(\d{2})-(\d{2})-(\d{4})")
SELECTOR_RE = re.compile(r"all|([sg])_(\d+)")


class BadRequest(ValueError):
    """A request the provider would answer with HTTP 400 and this message."""


@dataclass
class SimulatorConfig:
    fleet: FleetSpec = field(default_factory=FleetSpec)
    now: dt.datetime | None = None
    """The provider's clock, frozen at this instant; None follows the real time."""
    token: str | None = None
    max_page_size: int = 1000
    faults: dict[str, float] = field(default_factory=dict)
    retry_after: int = 1
    slow_seconds: float = 30.0


JSON_TYPE = "application/json"


@dataclass(frozen=True)
class Query:
    start: dt.date
    end: dt.date
    selectors: tuple[str, ...]
    page: int
    size: int

    @property
    def key(self) -> tuple:
        return (self.start, self.end, self.selectors, self.size)


class Simulator:
    """Everything the HTTP handler needs: the data, the clock, the faults and their log."""

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.dataset = Dataset(config.fleet)
        self.faults = Faults(config.fleet.seed, dict(config.faults))
        self._now = config.now
        self._attempts: Counter[tuple] = Counter()
        self._views: OrderedDict[tuple, list[bytes]] = OrderedDict()
        self._lock = threading.Lock()
        self.injected_bad_items: dict[tuple, list[tuple[str, bytes]]] = {}
        """(query key, page) -> the bad items added to that page, for tests to compare."""
        self.requests = 0
        self._sim_ids = {s.id for s in self.dataset.sims}
        self._group_ids = {s.group_id for s in self.dataset.sims if s.group_id} | set(
            range(1, config.fleet.groups + 1)
        )

    def now(self) -> dt.datetime:
        return self._now or dt.datetime.now(dt.UTC)

    def set_now(self, now: dt.datetime) -> None:
        if now.tzinfo is None:
            raise ValueError("the clock needs a datetime with an offset")
        self._now = now

    def parse(self, body: bytes) -> Query:
        try:
            request = json.loads(body or b"{}")
        except ValueError:
            raise BadRequest("request body is not valid JSON") from None
        if not isinstance(request, dict):
            raise BadRequest("request body must be a JSON object")
        filt = request.get("filter") or {}
        if not isinstance(filt, dict):
            raise BadRequest("filter must be an object with start and end")
        latest = self.dataset.last_sync_day(self.now()) - dt.timedelta(1)
        start = _date(filt.get("start"), "filter.start") if filt.get("start") else None
        end = _date(filt.get("end"), "filter.end") if filt.get("end") else None
        start, end = start or end or latest, end or start or latest
        if start > end:
            raise BadRequest(
                f"filter.start {filt.get('start')} is after filter.end {filt.get('end')}"
            )
        selectors = request.get("select", ["all"])
        if not isinstance(selectors, list) or not selectors:
            raise BadRequest("select must be a non-empty array")
        page = request.get("page", 0)
        if not isinstance(page, int) or isinstance(page, bool) or page < 0:
            raise BadRequest(f"page must be an integer >= 0, got {page!r}")
        size = request.get("size", self.config.max_page_size)
        if not isinstance(size, int) or isinstance(size, bool) or size < 1:
            raise BadRequest(f"size must be an integer >= 1, got {size!r}")
        self._check_selectors(selectors)
        return Query(
            start, end, tuple(sorted(set(selectors))), page, min(size, self.config.max_page_size)
        )

    def _check_selectors(self, selectors: list) -> None:
        for sel in selectors:
            match = SELECTOR_RE.fullmatch(sel) if isinstance(sel, str) else None
            if not match:
                raise BadRequest(f"unknown selector {sel!r}: expected all, s_<id> or g_<id>")
            kind, ident = match.groups()
            if kind == "s" and int(ident) not in self._sim_ids:
                raise BadRequest(f"selector {sel}: no SIM card with id {ident}")
            if kind == "g" and int(ident) not in self._group_ids:
                raise BadRequest(f"selector {sel}: no group with id {ident}")

    def items(self, query: Query) -> list[bytes]:
        """All items of the query in a stable order: by day, then by sid."""
        now = self.now()
        days = [query.start + dt.timedelta(i) for i in range((query.end - query.start).days + 1)]
        state = tuple(self.dataset.syncs_behind(d, now) for d in days)
        key = (query.start, query.end, query.selectors, state)
        with self._lock:
            if key in self._views:
                self._views.move_to_end(key)
                return self._views[key]
        selected = self._selected_sims(query.selectors)
        items: list[bytes] = []
        for day in days:
            day_items, sim_index = self.dataset.visible(day, now)
            if selected is None:
                items.extend(day_items)
            else:
                keep = np.flatnonzero(np.isin(sim_index, selected)).tolist()
                items.extend(day_items[i] for i in keep)
        with self._lock:
            self._views[key] = items
            while len(self._views) > 16:
                self._views.popitem(last=False)
        return items

    def _selected_sims(self, selectors: tuple[str, ...]) -> np.ndarray | None:
        """Indexes of the selected SIMs, or None for the whole account."""
        if "all" in selectors:
            return None
        wanted = {(kind, int(ident)) for kind, ident in (sel.split("_") for sel in selectors)}
        chosen = [
            index
            for index, sim in enumerate(self.dataset.sims)
            if ("s", sim.id) in wanted or ("g", sim.group_id) in wanted
        ]
        return np.array(chosen, dtype=np.int64)

    def page_body(self, query: Query) -> bytes:
        """The response body of one page, with the content faults applied."""
        faults = self.faults
        page = 0 if faults.hits("ignore_page", query.key) else query.page
        group_pull = all(sel.startswith("g_") for sel in query.selectors)
        # `empty_group`: the provider's group emptied, its SIMs moved out.
        emptied = group_pull and faults.hits("empty_group", query.key)
        items = [] if emptied else self.items(query)
        lo, hi = page * query.size, (page + 1) * query.size
        chosen = items[lo:hi]
        if chosen and page > 0 and faults.hits("duplicates", query.key, page):
            chosen = items[max(0, lo - 3) : lo] + chosen
        if chosen and page == 0 and faults.hits("day_overlap", query.key):
            chosen = self._end_of_day_before(query) + chosen
        if chosen and faults.hits("cost_in_cents", query.key, page):
            chosen = [in_cents(item) for item in chosen]
        if chosen and faults.hits("extra_fields", query.key, page):
            chosen = [item[:-1] + EXTRA_FIELD for item in chosen]
        if chosen and faults.hits("bad_items", query.key, page):
            chosen = chosen + self._bad_items(query, page)
        if chosen and faults.hits("lone_surrogate", query.key, page):
            chosen = [*chosen[:-1], renamed(chosen[-1], LONE_SURROGATE_NAME)]
        if chosen and faults.hits("windows_1251", query.key, page):
            chosen = [*chosen[:-1], renamed(chosen[-1], WINDOWS_1251_NAME)]
        if chosen and self.declares_windows_1251(query):
            chosen = [*chosen[:-1], renamed(chosen[-1], CYRILLIC_NAME)]
        if chosen and faults.hits("pretty_json", query.key, page):
            body = pretty(chosen)
        else:
            body = b'{"code":200,"message":"OK","result":{"items":[' + b",".join(chosen) + b"]}}"
        if self.declares_windows_1251(query):  # its renaming came last: the page is UTF-8
            body = body.decode().encode("cp1251")
        if faults.hits("byte_order_mark", query.key):
            body = BYTE_ORDER_MARK + body
        return body

    def declares_windows_1251(self, query: Query) -> bool:
        """`declared_windows_1251`: this page is sent in windows-1251, and says so."""
        return self.faults.hits("declared_windows_1251", query.key, query.page)

    def _end_of_day_before(self, query: Query) -> list[bytes]:
        """The account's last items of the day before the query's, those of the selected SIMs:
        what a report day that reaches back before midnight adds to every pull alike."""
        day_items, sim_index = self.dataset.visible(query.start - dt.timedelta(days=1), self.now())
        selected = self._selected_sims(query.selectors)
        last = range(max(0, len(day_items) - DAY_OVERLAP_ITEMS), len(day_items))
        return [day_items[i] for i in last if selected is None or sim_index[i] in selected]

    def _bad_items(self, query: Query, page: int) -> list[bytes]:
        key = (query.key, page)
        with self._lock:
            if key in self.injected_bad_items:
                return [raw for _, raw in self.injected_bad_items[key]]
        count = 1 + self.faults.pick("bad_items_count", 2, key)
        day_start = int(dt.datetime.combine(query.start, dt.time(), self.dataset.tz).timestamp())
        made = []
        for j in range(count):
            kind = BAD_ITEM_KINDS[self.faults.pick("bad_items_kind", len(BAD_ITEM_KINDS), key, j)]
            serial = self.faults.pick("bad_items_serial", 10**9, key, j)
            made.append((kind, bad_item(kind, serial, day_start)))
        with self._lock:
            self.injected_bad_items.setdefault(key, made)
        return [raw for _, raw in made]

    def attempt(self, body: bytes) -> int:
        """How many times this exact request body has been seen, this one included."""
        with self._lock:
            self._attempts[body] += 1
            return self._attempts[body]

    def count_request(self) -> None:
        with self._lock:
            self.requests += 1


def _date(value: object, name: str) -> dt.date:
    match = DATE_RE.fullmatch(value) if isinstance(value, str) else None
    if not match:
        raise BadRequest(f"{name} {value!r} is not a date in the format DD-MM-YYYY")
    day, month, year = map(int, match.groups())
    try:
        return dt.date(year, month, day)
    except ValueError:
        raise BadRequest(f"{name} {value!r} is not a calendar date") from None


def _error_body(code: int, message: str) -> bytes:
    return json.dumps({"code": code, "message": message}).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: SimulatorHTTPServer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: a benchmark makes thousands of requests."""

    def do_GET(self) -> None:
        if self.path == "/_simulator/health":
            self._send(200, b'{"ok":true}')
        else:
            self._send(404, _error_body(404, f"no such path {self.path}"))

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        sim = self.server.simulator
        if self.path == "/_simulator/clock":
            try:
                sim.set_now(dt.datetime.fromisoformat(json.loads(body)["now"]))
            except (ValueError, KeyError, TypeError) as exc:
                self._send(400, _error_body(400, f"bad clock request: {exc}"))
                return
            self._send(200, json.dumps({"now": sim.now().isoformat()}).encode())
            return
        if self.path != API_PATH:
            self._send(404, _error_body(404, f"no such path {self.path}"))
            return
        sim.count_request()
        token = sim.config.token
        if token is not None and self.headers.get("Authorization") != f"Bearer {token}":
            self._send(401, _error_body(401, "authorization required: invalid or missing token"))
            return
        try:
            query = sim.parse(body)
        except BadRequest as exc:
            self._send(400, _error_body(400, str(exc)))
            return
        self._answer(sim, query, sim.attempt(body), body)

    def _answer(self, sim: Simulator, query: Query, attempt: int, body: bytes) -> None:
        faults, key = sim.faults, (body, attempt)
        if faults.hits("rate_limit", *key):
            self._send(
                429,
                _error_body(429, "too many requests"),
                {"Retry-After": str(sim.config.retry_after)},
            )
            return
        if faults.hits("server_error", *key):
            status = (500, 502, 503)[faults.pick("server_error", 3, *key)]
            self._send(status, _error_body(status, "internal server error"))
            return
        if faults.hits("slow", *key):
            time.sleep(sim.config.slow_seconds)
        payload = sim.page_body(query)
        if faults.hits("disconnect", *key):
            self._send_head(200, len(payload))
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        if faults.hits("malformed_json", *key):
            payload = payload[: len(payload) // 2]
        headers = {}
        if sim.declares_windows_1251(query):
            headers["Content-Type"] = f"{JSON_TYPE}; charset=windows-1251"
        if faults.hits("wrong_encoding", *key):
            headers["Content-Encoding"] = "gzip"  # a proxy's mislabel: the body is not
        self._send(200, payload, headers)

    def _send_head(self, status: int, length: int, headers: dict[str, str] | None = None) -> None:
        self.send_response(status)
        headers = {"Content-Type": JSON_TYPE, **(headers or {})}
        self.send_header("Content-Length", str(length))
        for name, value in headers.items():
            self.send_header(name, value)
        self.end_headers()

    def _send(self, status: int, payload: bytes, headers: dict[str, str] | None = None) -> None:
        try:
            self._send_head(status, len(payload), headers)
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            self.close_connection = True


class SimulatorHTTPServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, simulator: Simulator, host: str = "127.0.0.1", port: int = 0) -> None:
        self.simulator = simulator
        super().__init__((host, port), Handler)

    @property
    def base_url(self) -> str:
        host, port = self.server_address[:2]
        return f"http://{host}:{port}"

    @property
    def api_url(self) -> str:
        """What NOVA_API_URL should be set to for this server."""
        return f"{self.base_url}/api"


class RunningSimulator:
    """A simulator serving on loopback from a background thread (for tests and the demo)."""

    def __init__(
        self, config: SimulatorConfig | None = None, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self.simulator = Simulator(config or SimulatorConfig())
        self.server = SimulatorHTTPServer(self.simulator, host, port)
        self._thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def api_url(self) -> str:
        return self.server.api_url

    def __enter__(self) -> RunningSimulator:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.server.shutdown()
        self.server.server_close()
        self._thread.join()
