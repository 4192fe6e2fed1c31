"""The wire format of `report/call_sms` and the unit the client yields: one page."""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from typing import Any

import msgspec


class Result(msgspec.Struct):
    items: list[msgspec.Raw]


class Envelope(msgspec.Struct):
    """The response envelope. Items stay raw JSON: DuckDB parses them in bulk later."""

    code: int
    message: str | None = None
    result: Result | None = None


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
    """One page as received: the verbatim body and how it was obtained."""

    request: PageRequest
    selector: str
    page: int
    status: int
    body: bytes
    items: list[msgspec.Raw]
    fetched_at: dt.datetime
    attempts: int
    retry_reasons: tuple[str, ...] = ()

    def decoded_items(self) -> list[dict[str, Any]]:
        """The items as Python dicts (for tests and small tools, not the hot path)."""
        return [msgspec.json.decode(raw) for raw in self.items]
