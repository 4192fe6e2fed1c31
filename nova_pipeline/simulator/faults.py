"""Faults switched on by name, each with a rate, decided deterministically under the seed.

Transport faults (429, 5xx, slow, disconnect, truncated body, a body labelled gzip but
not compressed) depend on how many times the same request was already made, so a retry
can succeed. Content faults (bad items, duplicates, a day that overlaps the one before,
an ignored page number, schema drift, a body laid out over many lines, a name cut inside
an emoji or not in UTF-8, declared or not, a byte order mark, costs sent in cents, a group
whose pull comes back empty) depend only on the request, so every retry of a page sees the
same content.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from decimal import Decimal

from nova_pipeline.simulator.dataset import euro_text

FAULTS = (
    "rate_limit",
    "server_error",
    "slow",
    "disconnect",
    "malformed_json",
    "wrong_encoding",
    "bad_items",
    "duplicates",
    "day_overlap",
    "ignore_page",
    "extra_fields",
    "pretty_json",
    "lone_surrogate",
    "windows_1251",
    "declared_windows_1251",
    "byte_order_mark",
    "cost_in_cents",
    "empty_group",
)
DEFAULT_RATES = {
    "rate_limit": 0.1,
    "server_error": 0.1,
    "slow": 0.05,
    "disconnect": 0.05,
    "malformed_json": 0.05,
    "wrong_encoding": 0.05,
    "bad_items": 0.2,
    "duplicates": 0.2,
    "day_overlap": 1.0,
    "ignore_page": 1.0,
    "extra_fields": 0.2,
    "pretty_json": 0.5,
    "lone_surrogate": 0.05,
    "windows_1251": 0.05,
    "declared_windows_1251": 0.05,
    "byte_order_mark": 1.0,
    "cost_in_cents": 1.0,
    "empty_group": 1.0,
}

BAD_ITEM_KINDS = (
    "sid_not_int",
    "cost_not_number",
    "date_not_int",
    "missing_cost",
    "missing_sid",
    "unknown_type",
    "negative_cost",
    "sid_beyond_int64",
    "date_in_milliseconds",
    "duplicate_key",
    "cost_not_finite",
)
DAY_OVERLAP_ITEMS = 3
"""`day_overlap`: the first page of a day also serves the account's last items of the day
before (those of the pull's SIMs), as a provider whose report day reached back before
midnight would: the same sids on two days."""
EXTRA_FIELD = b',"roaming":false}'
"""Schema drift: a field the contract does not have, added to every item of a hit page."""
PRETTY_FIELD = b',\r\n        "'
"""`pretty_json`: a body laid out over lines (CRLF) and indented, as a server with
pretty-printing on sends it: the same JSON values, line breaks between tokens."""
BAD_SID_BASE = 9_000_000_000_000
"""Bad items that carry a sid use this range, far from any real sid."""


def parse_fault_spec(names: str, rates: list[str] | None = None) -> dict[str, float]:
    """`rate_limit,slow` and `["slow=0.5"]` -> {fault: rate}; unknown names are an error."""
    chosen: dict[str, float] = {}
    for name in filter(None, (n.strip() for n in names.split(","))):
        if name not in FAULTS:
            raise ValueError(f"unknown fault {name!r}; known: {', '.join(FAULTS)}")
        chosen[name] = DEFAULT_RATES[name]
    for item in rates or []:
        name, _, value = item.partition("=")
        if name not in chosen:
            raise ValueError(f"--fault-rate {item!r}: fault {name!r} is not switched on")
        rate = float(value)
        if not 0 <= rate <= 1:
            raise ValueError(f"--fault-rate {item!r}: the rate must be between 0 and 1")
        chosen[name] = rate
    return chosen


@dataclass
class Faults:
    seed: int = 1
    rates: dict[str, float] = field(default_factory=dict)

    def hits(self, name: str, *key: object) -> bool:
        rate = self.rates.get(name, 0.0)
        if rate <= 0:
            return False
        if rate >= 1:
            return True
        digest = hashlib.blake2b(repr((self.seed, name, key)).encode(), digest_size=8).digest()
        return int.from_bytes(digest, "little") / 2**64 < rate

    def pick(self, name: str, options: int, *key: object) -> int:
        digest = hashlib.blake2b(repr((self.seed, name, "pick", key)).encode(), digest_size=8)
        return int.from_bytes(digest.digest(), "little") % options


def pretty(items: list[bytes]) -> bytes:
    """A page body laid out as a pretty-printing server would, one field per line. Inside
    a JSON string a quote is escaped, so `,"` only ever joins two fields."""
    fields = [
        b"{\r\n        " + item[1:-1].replace(b',"', PRETTY_FIELD) + b"\r\n      }"
        for item in items
    ]
    return (
        b'{\r\n  "code": 200,\r\n  "message": "OK",\r\n  "result": {\r\n    "items": [\r\n      '
        + b",\r\n      ".join(fields)
        + b"\r\n    ]\r\n  }\r\n}\r\n"
    )


LONE_SURROGATE_NAME = b'"Gate \\ud83d"'
"""`lone_surrogate`: a SIM name cut inside an emoji, as a UTF-16 writer (JavaScript's
`JSON.stringify`) leaves it: the high half of the pair, escaped, alone."""
CYRILLIC_NAME = '"Поезд-7"'.encode()
WINDOWS_1251_NAME = CYRILLIC_NAME.decode().encode("cp1251")
"""`windows_1251`: a Cyrillic SIM name sent in the legacy Russian encoding, not UTF-8, and
not declared. `declared_windows_1251`: the same name, in a page sent whole in that encoding
with `charset=windows-1251` in its Content-Type, as HTTP lets a server do."""

BYTE_ORDER_MARK = b"\xef\xbb\xbf"
"""`byte_order_mark`: UTF-8's byte order mark before the body, as a server whose source
file or template was saved "UTF-8 with BOM" (a classic of PHP) sends it. JSON forbids
sending one and lets a reader ignore it (RFC 8259, section 8.1)."""


COST = re.compile(rb'"session_cost":([0-9.]+)')


def in_cents(item: bytes) -> bytes:
    """`cost_in_cents`: the item with its cost in euro cents, 100 times the euro amount, as
    a provider that changed its unit without a word would send it: valid, and wrong."""
    return COST.sub(
        lambda cost: b'"session_cost":' + euro_text(int(Decimal(cost[1].decode()) * 10**8)),
        item,
        count=1,
    )


def renamed(item: bytes, name: bytes) -> bytes:
    """The item with its SIM name (its last field) replaced by the JSON bytes `name`."""
    head, _, _ = item.rpartition(b',"name":')
    return head + b',"name":' + name + b"}"


def bad_item(kind: str, serial: int, day_start: int) -> bytes:
    """One malformed item of the given kind; the valid items beside it are untouched."""
    sid = BAD_SID_BASE + serial
    sim = b'"id":1001,"original_number":"+77010000000","iccid":"8970199000000000000","name":null'
    good = {
        "sid": b'"sid":%d' % sid,
        "date": b'"date":%d' % (day_start + 3600),
        "type": b'"type":"out_sms"',
        "to_number": b'"to_number":"+77070000000"',
        "session_cost": b'"session_cost":0.05',
    }
    if kind == "sid_not_int":
        good["sid"] = b'"sid":"S%d"' % sid
    elif kind == "cost_not_number":
        good["session_cost"] = b'"session_cost":"free"'
    elif kind == "date_not_int":
        good["date"] = b'"date":"yesterday"'
    elif kind == "missing_cost":
        del good["session_cost"]
    elif kind == "missing_sid":
        del good["sid"]
        good["date"] = b'"date":%d' % (day_start + serial % 86_400)  # no two alike
    elif kind == "unknown_type":
        good["type"] = b'"type":"mms"'
    elif kind == "negative_cost":
        good["session_cost"] = b'"session_cost":-0.25'
    elif kind == "sid_beyond_int64":
        good["sid"] = b'"sid":%d' % (2**63 + serial)
    elif kind == "date_in_milliseconds":
        good["date"] = b'"date":%d' % ((day_start + 3600) * 1000)
    elif kind == "duplicate_key":
        good["session_cost"] = b'"session_cost":0.05,"session_cost":0.5'
    elif kind == "cost_not_finite":
        good["session_cost"] = b'"session_cost":NaN'  # Python's json.dumps of float("nan")
    else:
        raise ValueError(kind)
    return b"{" + b",".join([*good.values(), sim]) + b"}"
