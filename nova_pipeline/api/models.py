"""The wire format of `report/call_sms` and the unit the client yields: one page."""

from __future__ import annotations

import datetime as dt
import json
import re
from dataclasses import dataclass
from typing import Annotated, Any, Literal, get_args

import msgspec

EventType = Literal["call", "in_sms", "out_sms", "ussd"]
EVENT_TYPES: tuple[str, ...] = get_args(EventType)

INT64_RANGE = (-(2**63), 2**63 - 1)
Int64 = Annotated[int, msgspec.Meta(ge=INT64_RANGE[0], le=INT64_RANGE[1])]
EPOCH_RANGE = (-62_135_596_800, 253_402_300_799)
"""Unix seconds of 0001-01-01 and 9999-12-31 23:59:59 UTC: a time outside them cannot be
read back into Python (and DuckDB cannot convert one from far beyond them at all)."""
Timestamp = Annotated[int, msgspec.Meta(ge=EPOCH_RANGE[0], le=EPOCH_RANGE[1])]
Cost = Annotated[float, msgspec.Meta(ge=0, lt=1e12)]
"""A float only to check sign and range (DECIMAL(18,6) holds < 1e12); the stored value is
read by DuckDB from the JSON text, exactly."""


class Item(msgspec.Struct, forbid_unknown_fields=True, gc=False):
    """One item exactly as the contract describes it. Stricter than the SQL rules: an item
    this rejects (an extra field, a cost of 1e12) is judged again, rule by rule, in
    `transforms/events.py`; an item this accepts meets every rule there, but for a key sent
    twice (msgspec keeps the last value), which DuckDB's typed read then refuses
    (`transforms/events.py::run_staged`).
    `gc=False`: a page makes a thousand of these, none can be part of a cycle."""

    sid: Int64
    date: Timestamp
    type: EventType
    to_number: str
    session_cost: Cost
    id: Int64
    original_number: str
    iccid: str
    name: str | None = None


class _Result(msgspec.Struct, gc=False):
    items: list[msgspec.Raw]


class Envelope(msgspec.Struct, gc=False):
    """The response envelope, items left raw: any well-formed page decodes."""

    code: int
    message: str | None = None
    result: _Result | None = None


class _ConformingResult(msgspec.Struct, gc=False):
    items: list[Item]


class ConformingEnvelope(msgspec.Struct, gc=False):
    """The envelope of a page whose every item meets the contract."""

    code: int
    message: str | None = None
    result: _ConformingResult | None = None


NON_FINITE_LITERALS = ("NaN", "Infinity", "-Infinity")
"""Not JSON, but what Python's `json.dumps` writes for a float that is not finite, and what
DuckDB's reader takes (as a double), so the rules can judge an item holding one."""
NON_FINITE = re.compile(
    rb'"[^"\\]*(?:\\.[^"\\]*)*"'
    + rb"|(?<=[\s:,\[])("
    + "|".join(map(re.escape, NON_FINITE_LITERALS)).encode()
    + rb")(?=[\s,\]}])"
)
"""A JSON string, matched whole to be skipped, or one of those literals standing as a value."""


def _zeros(match: re.Match[bytes]) -> bytes:
    literal = match[1]
    if literal is None:
        return match[0]
    sign = b"-" if literal.startswith(b"-") else b""
    return sign + b"0e" + b"0" * (len(literal) - len(sign) - 2)


def with_finite_stand_ins(body: bytes) -> bytes | None:
    """`body` with each NaN / ±Infinity literal (outside strings) replaced by a zero of the
    same length, so that msgspec can count and split the items and every offset holds; None
    when it has none. Only for reading the envelope: the page is landed as sent."""
    replaced = NON_FINITE.sub(_zeros, body)
    return None if replaced == body else replaced


@dataclass(frozen=True)
class PageRequest:
    """What was asked, without secrets: enough to repeat the request exactly."""

    url: str
    body: dict[str, Any]

    @property
    def fingerprint(self) -> str:
        return msgspec.json.encode({"url": self.url, "body": self.body}).decode()


@dataclass(frozen=True)
class Page:
    """One page as received: the verbatim body, how it was obtained, and whether every
    item in it meets the contract (`conforms`), which decides how DuckDB reads it."""

    request: PageRequest
    selector: str
    page: int
    status: int
    body: bytes
    item_count: int
    conforms: bool
    fetched_at: dt.datetime
    attempts: int
    retry_reasons: tuple[str, ...] = ()

    def raw_items(self) -> list[bytes]:
        """Each item as its verbatim JSON (for tests and small tools, not the hot path)."""
        readable = with_finite_stand_ins(self.body) or self.body
        envelope = msgspec.json.decode(readable, type=Envelope)
        items, end = [], 0
        for raw in envelope.result.items if envelope.result else []:
            start = readable.index(bytes(raw), end)
            end = start + len(raw)
            items.append(self.body[start:end])
        return items

    def decoded_items(self) -> list[Any]:
        """The items as Python objects (for tests and small tools, not the hot path), read
        by Python's reader, which takes NaN and ±Infinity too."""
        return [json.loads(raw) for raw in self.raw_items()]
