"""The NovaConnect `report/call_sms` client: auth, retries and the page loop.

httpx transports, no Dagster: the assets wrap it, the tests run it against the simulator.
"""

from __future__ import annotations

import codecs
import datetime as dt
import logging
import re
import ssl
import threading
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Literal, NamedTuple

import httpx
import msgspec

from nova_pipeline.api.errors import (
    ApiResponseError,
    AuthError,
    CertificateError,
    PageIgnoredError,
    PullStopped,
    RequestRejected,
    RetriesExhausted,
    TooManyPagesError,
    UnreadableBodyError,
)
from nova_pipeline.api.models import (
    ConformingEnvelope,
    Envelope,
    Page,
    PageRequest,
    with_finite_stand_ins,
)
from nova_pipeline.api.retry import RETRYABLE_STATUS, RetryPolicy, parse_retry_after, retry_delay

ENDPOINT = "/report/call_sms"
DATE_FORMAT = "%d-%m-%Y"
BYTE_ORDER_MARK = codecs.BOM_UTF8
"""Dropped from the start of a body: JSON forbids sending one and lets a reader ignore it
(RFC 8259, section 8.1), and a server whose template was saved "UTF-8 with BOM" sends it
before every page. Neither msgspec nor DuckDB reads a body that starts with it."""

log = logging.getLogger(__name__)


class _Retry(NamedTuple):
    reason: str
    retry_after_s: float | None = None
    connected: bool = True
    unread: str = ""
    """Where a body that is no JSON goes wrong, quoted (`_where_unreadable`)."""


REFUSED_TOKEN = (401, 403)
"""As the HTTP status or as the body's `code`: the provider's page says only that 200 is
success, so a body's code is read as an HTTP status would be (429 and 5xx retried too)."""

UNDONE_ENCODINGS = frozenset({"identity", "gzip", "deflate", "zstd"})
"""Content-Encodings httpx undoes (zstd because `zstandard` is installed, for the landing
zone). Any other it leaves as it came, which would read as a broken body on every retry."""

NOT_CONNECTED = (httpx.ConnectError, httpx.ConnectTimeout)
"""Transport errors raised before any server took the connection: only these question the
URL. A dropped or timed-out exchange (RemoteProtocolError, ReadTimeout) reached a server."""


LoneSurrogates = Literal["fail", "replace"]
"""What to do with a body holding a lone UTF-16 surrogate escape (NOVA_API_LONE_SURROGATES)."""


@dataclass(frozen=True)
class ClientConfig:
    page_size: int = 1000
    max_pages: int = 100_000
    retry: RetryPolicy = field(default_factory=RetryPolicy)
    charset: str = ""
    """How to read a body that is not UTF-8 when its Content-Type names no charset."""
    lone_surrogates: LoneSurrogates = "fail"
    """`replace`: each lone surrogate escape becomes \\ufffd (U+FFFD) and the page is read."""


@dataclass
class FetchStats:
    """What the fetches of a client cost: counted for run metadata."""

    requests: int = 0
    retries: int = 0
    by_reason: Counter[str] = field(default_factory=Counter)
    lone_surrogates_replaced: int = 0


class Endpoint:
    """`POST report/call_sms` over an httpx transport: connection pool, keep-alive,
    timeouts, TLS and the proxy of the standard environment variables.

    No `httpx.Client` on top: its cookie jar, URL merging, redirect and auth machinery
    cost about 0.4 ms of CPU per 200 KB page, a quarter of the client's CPU on a
    million-item day (docs/benchmarks.md), and this API needs none of them. The token is
    sent only as a header.
    """

    def __init__(
        self,
        api_url: str,
        token: str = "",
        auth_header: str = "Authorization",
        auth_scheme: str = "Bearer",
        connect_timeout_s: float = 10.0,
        read_timeout_s: float = 60.0,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.api_url = api_url.rstrip("/")
        self.url = httpx.URL(self.api_url + ENDPOINT)
        headers = {
            "Content-Type": "application/json",
            "Accept": "application/json",
            "Accept-Encoding": "gzip, deflate",
            "User-Agent": f"nova-pipeline (python-httpx/{httpx.__version__})",
        }
        if token:
            headers[auth_header] = f"{auth_scheme} {token.strip()}".strip()
        self._headers = httpx.Headers(headers)
        self._timeout = httpx.Timeout(read_timeout_s, connect=connect_timeout_s).as_dict()
        self._transport = transport or httpx.HTTPTransport(proxy=environment_proxy(self.url))

    def post(self, content: bytes) -> httpx.Response:
        """One exchange, the body read in full (decompressed if the server compressed it)."""
        request = httpx.Request(
            "POST",
            self.url,
            headers=self._headers,
            content=content,
            extensions={"timeout": self._timeout},
        )
        response = self._transport.handle_request(request)
        try:
            response.read()
        finally:
            response.close()
        return response

    def close(self) -> None:
        self._transport.close()


def environment_proxy(url: httpx.URL) -> str | None:
    """The proxy that HTTP_PROXY / HTTPS_PROXY / ALL_PROXY / NO_PROXY name for `url`."""
    if urllib.request.proxy_bypass(url.host):
        return None
    proxies = urllib.request.getproxies()
    return proxies.get(url.scheme) or proxies.get("all")


class NovaClient:
    """Pages `report/call_sms` queries; each page is yielded as it arrives."""

    def __init__(
        self,
        endpoint: Endpoint,
        config: ClientConfig | None = None,
        logger: logging.Logger | None = None,
    ) -> None:
        self.endpoint = endpoint
        self.config = config or ClientConfig()
        self.log = logger or log
        self.stats = FetchStats()
        self._stopped = threading.Event()

    def stop(self) -> None:
        """From any thread: end this client's paging before its next request or during a
        retry wait, with `PullStopped` (a request in flight runs to its end or timeout)."""
        self._stopped.set()

    def __enter__(self) -> NovaClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.endpoint.close()

    def pages(self, start: dt.date, end: dt.date, selector: str = "all") -> Iterator[Page]:
        """Every page of one (day range, selector) query, from page 0 to the first empty one,
        which is yielded too: it is the record that the query was made and ran to its end,
        the only one a query with no item leaves.

        A short page is not taken as the end: a server that silently caps `size` sends
        short pages that are not the last. Only an empty page ends the query.
        """
        previous: bytes | None = None
        for number in range(self.config.max_pages):
            self._unless_stopped(selector, start, end, number)
            page = self.fetch_page(start, end, selector, number)
            if not page.item_count:
                yield page
                return
            if page.body == previous:
                raise PageIgnoredError(
                    f"the server answered page {number} of {selector} {start}..{end} with the "
                    f"same body as page {number - 1}: it ignored the page number, so paging "
                    "cannot make progress"
                )
            previous = page.body
            yield page
        raise TooManyPagesError(
            f"{selector} {start}..{end} still had items after {self.config.max_pages} pages "
            "(NOVA_MAX_PAGES); raise the cap if the day is really that large"
        )

    def _unless_stopped(self, selector: str, start: dt.date, end: dt.date, number: int) -> None:
        if self._stopped.is_set():
            raise PullStopped(f"stopped before page {number} of {selector} {start}..{end}")

    def fetch_page(self, start: dt.date, end: dt.date, selector: str, number: int) -> Page:
        body = {
            "filter": {"start": start.strftime(DATE_FORMAT), "end": end.strftime(DATE_FORMAT)},
            "select": [selector],
            "page": number,
            "size": self.config.page_size,
        }
        request = PageRequest(url=str(self.endpoint.url), body=body)
        policy = self.config.retry
        deadline = time.monotonic() + policy.deadline_s
        reasons: list[str] = []
        connected, unread = False, ""
        for attempt in range(1, policy.max_attempts + 1):
            self.stats.requests += 1
            outcome = self._attempt(request)
            if not isinstance(outcome, _Retry):
                status, content, item_count, conforms, fetched_at, replaced = outcome
                if replaced:
                    self._said_replaced(request, replaced)
                return Page(
                    request=request,
                    selector=selector,
                    page=number,
                    status=status,
                    body=content,
                    item_count=item_count,
                    conforms=conforms,
                    fetched_at=fetched_at,
                    attempts=attempt,
                    retry_reasons=tuple(reasons),
                )
            reason, retry_after, reached, unread_now = outcome
            connected, unread = connected or reached, unread_now or unread
            reasons.append(reason)
            self.stats.by_reason[reason] += 1
            if attempt == policy.max_attempts:
                break
            wait = retry_delay(attempt, policy, retry_after)
            if time.monotonic() + wait > deadline:
                raise self._gave_up(
                    request,
                    f"after {attempt} attempts, the next wait ({wait:.1f} s) passes the "
                    f"{policy.deadline_s:.0f} s deadline (NOVA_RETRY_DEADLINE)",
                    reasons,
                    connected,
                    unread,
                )
            self.stats.retries += 1
            self.log.warning(
                "retrying %s page %d (%s..%s) in %.2f s, attempt %d failed: %s",
                selector,
                number,
                start,
                end,
                wait,
                attempt,
                reason,
            )
            self._stopped.wait(wait)
            self._unless_stopped(selector, start, end, number)
        raise self._gave_up(
            request,
            f"after {policy.max_attempts} attempts (NOVA_MAX_ATTEMPTS)",
            reasons,
            connected,
            unread,
        )

    def _gave_up(
        self,
        request: PageRequest,
        when: str,
        reasons: list[str],
        connected: bool,
        unread: str,
    ) -> RetriesExhausted:
        """Why a page could not be had, with what points at the cause: a URL no attempt
        reached, or where the last body that was no JSON goes wrong (a proxy's page)."""
        message = f"{request.fingerprint}: gave up {when}; reasons: {', '.join(reasons)}"
        if not connected:
            message += f". Is NOVA_API_URL ({self.endpoint.api_url}) right and reachable?"
        if unread:
            message += f". The last body it could not read {unread}"
        return RetriesExhausted(message)

    def _attempt(
        self, request: PageRequest
    ) -> tuple[int, bytes, int, bool, dt.datetime, list[str]] | _Retry:
        """One HTTP exchange: (status, body, items, conforms, fetched at, lone surrogate
        escapes replaced), or why to retry."""
        fetched_at = dt.datetime.now(dt.UTC)
        try:
            response = self.endpoint.post(msgspec.json.encode(request.body))
        except httpx.TransportError as exc:
            refused = _certificate_refused(exc)
            if refused:
                raise CertificateError(
                    f"{request.fingerprint}: the server's TLS certificate was not accepted "
                    f"({refused}). Check that NOVA_API_URL names the API's own host; "
                    "behind a proxy that re-signs HTTPS, set SSL_CERT_FILE to a CA bundle "
                    "holding the proxy's certificate"
                ) from exc
            kind = "timeout" if isinstance(exc, httpx.TimeoutException) else "connection error"
            return _Retry(
                f"{kind} ({type(exc).__name__})", connected=not isinstance(exc, NOT_CONNECTED)
            )
        except httpx.DecodingError as exc:
            return _Retry(f"body not in its Content-Encoding ({exc})")
        status = response.status_code
        if status in RETRYABLE_STATUS:
            return _Retry(f"HTTP {status}", parse_retry_after(response.headers.get("Retry-After")))
        if status in REFUSED_TOKEN:
            raise _token_refused(f"HTTP {status}", _server_message(response.content))
        if 300 <= status < 400:
            raise RequestRejected(
                f"HTTP {status} for {request.fingerprint}: the server redirects to "
                f"{response.headers.get('Location', '(no Location given)')}; set NOVA_API_URL "
                "to the API's own address (redirects are not followed: they would send the "
                "token on to another address)"
            )
        if status >= 400:
            raise RequestRejected(
                f"HTTP {status} for {request.fingerprint}: {_server_message(response.content)}"
            )
        foreign = [
            coding
            for coding in response.headers.get_list("Content-Encoding", split_commas=True)
            if coding.strip().lower() not in UNDONE_ENCODINGS
        ]
        if foreign:
            raise UnreadableBodyError(
                f"the body for {request.fingerprint} is compressed with {', '.join(foreign)}, "
                "which the client did not ask for and cannot undo (it asks for gzip or "
                "deflate): the server must honour Accept-Encoding"
            )
        content = _as_utf8(
            response.content.removeprefix(BYTE_ORDER_MARK),
            response.charset_encoding or self.config.charset,
        )
        read = self._read(request, content)
        if isinstance(read, _Retry):
            return read
        content, envelope, conforms, replaced = read
        if envelope.code in RETRYABLE_STATUS:
            return _Retry(f"body code {envelope.code}")
        if envelope.code in REFUSED_TOKEN:
            raise _token_refused(f"body code {envelope.code}", str(envelope.message))
        if envelope.code != 200:
            raise ApiResponseError(
                f"body code {envelope.code} for {request.fingerprint}: {envelope.message}"
            )
        items = len(envelope.result.items) if envelope.result else 0
        return status, content, items, conforms, fetched_at, replaced

    def _read(
        self, request: PageRequest, content: bytes, replaced: list[str] | None = None
    ) -> tuple[bytes, ConformingEnvelope | Envelope, bool, list[str]] | _Retry:
        """The body as it will be landed, its envelope, whether every item meets the
        contract and the lone surrogate escapes `replaced` in it (None: not read yet); or
        why to retry. A body no retry can mend raises."""
        try:
            return content, *_decode(content), replaced or []
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            problem = _not_utf8(content)
            lone = None if problem else LONE_SURROGATE.search(content)
            if lone and replaced is None and self.config.lone_surrogates == "replace":
                return self._read(request, *without_lone_surrogates(content))
            if lone:
                problem = (
                    f"a lone UTF-16 surrogate escape, {lone['escape'].decode()} at byte "
                    f"{lone.start('escape')} (a string cut inside a character, such as an "
                    "emoji); the provider must send that string whole, or set "
                    "NOVA_API_LONE_SURROGATES=replace to read it with U+FFFD in that place"
                )
            if problem:
                raise UnreadableBodyError(
                    f"the body for {request.fingerprint} holds {problem}: no reader here can "
                    "take the page, and every retry gets the same"
                ) from exc
            envelope = _with_non_finite_numbers(content)
            if envelope is None:
                return _Retry(f"invalid JSON body ({exc})", unread=_where_unreadable(content, exc))
            return content, envelope, False, replaced or []

    def _said_replaced(self, request: PageRequest, replaced: list[str]) -> None:
        """Counted and said in the run's log: the page lands with \\ufffd in their place."""
        self.stats.lone_surrogates_replaced += len(replaced)
        self.log.warning(
            "%s: replaced %d lone UTF-16 surrogate escape%s (%s) by \\ufffd (U+FFFD), as "
            "NOVA_API_LONE_SURROGATES=replace asks; the page is landed with \\ufffd there",
            request.fingerprint,
            len(replaced),
            "s" * (len(replaced) > 1),
            ", ".join(replaced[:3]) + (", ..." if len(replaced) > 3 else ""),
        )


LONE_SURROGATE = re.compile(
    rb"(?<!\\)(?:\\\\)*(?P<escape>\\u[dD][89abAB][0-9a-fA-F]{2}(?!\\u[dD][c-fC-F])"
    rb"|(?<!\\u[dD][89abAB][0-9a-fA-F]{2})\\u[dD][c-fC-F][0-9a-fA-F]{2})"
)
"""A UTF-16 surrogate escape without its other half (not after an escaped backslash): valid
JSON to some writers (JavaScript's), but no Unicode, and a body msgspec and DuckDB refuse.
Sought only in a body that failed to decode, where it tells a page no retry can mend, or,
with NOVA_API_LONE_SURROGATES=replace, the escapes to replace."""


def without_lone_surrogates(body: bytes) -> tuple[bytes, list[str]]:
    """`body` with each lone surrogate escape replaced by \\ufffd, six bytes for six (so
    the byte offsets said hold), and which escapes at which bytes."""
    found = [
        f"{m['escape'].decode()} at byte {m.start('escape')}" for m in LONE_SURROGATE.finditer(body)
    ]
    return LONE_SURROGATE.sub(lambda m: m[0][:-6] + rb"\ufffd", body), found


def _not_utf8(body: bytes) -> str | None:
    """What in a body that failed to decode is not UTF-8, and where; None when nothing is
    (a body cut short ends in a partial character: that one a retry can mend)."""
    try:
        body.decode()
    except UnicodeDecodeError as error:
        if error.reason != "unexpected end of data":
            return (
                f"bytes that are not UTF-8, {body[error.start : error.start + 4]!r} at byte "
                f"{error.start} (text in another encoding, such as windows-1251?); the "
                "provider must send UTF-8 or name its charset in the Content-Type; if it "
                "never does, set NOVA_API_CHARSET to the one it uses"
            )
    return None


_CONFORMING = msgspec.json.Decoder(ConformingEnvelope)
_ANY = msgspec.json.Decoder(Envelope)


def _decode(body: bytes) -> tuple[ConformingEnvelope | Envelope, bool]:
    """The envelope and whether every item in it meets the contract. Checking the items
    here, in C, lets DuckDB read a conforming page with fixed column types instead of
    judging each item rule by rule; a page that is not a well-formed envelope raises."""
    try:
        return _CONFORMING.decode(body), True
    except msgspec.ValidationError:
        return _ANY.decode(body), False


def _token_refused(how: str, message: str) -> AuthError:
    return AuthError(
        f"NovaConnect refused the token with {how} ({message}): check NOVA_API_TOKEN "
        "(and NOVA_AUTH_HEADER / NOVA_AUTH_SCHEME)"
    )


def _where_unreadable(body: bytes, error: Exception) -> str:
    """The bytes around the offset msgspec's `error` names, where the body stops being JSON
    (a proxy's HTML page from byte 0, a raw tab inside a name), or its start when the error
    names none (a body cut short)."""
    at = re.search(r"\(byte (\d+)\)", str(error))
    if at:
        byte = int(at[1])
        around = body[max(0, byte - 60) : byte + 60].decode(errors="replace")
        return f"goes wrong at byte {byte}, in {around!r}"
    return f"began {body[:120].decode(errors='replace')!r}"


def _certificate_refused(error: BaseException) -> str | None:
    """Why TLS verification refused the server's certificate, if that is what `error` (or an
    error it was raised from) is; None otherwise."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, ssl.SSLCertVerificationError):
            return seen.verify_message or str(seen)
        seen = seen.__cause__ or seen.__context__
    return None


def _as_utf8(body: bytes, charset: str | None) -> bytes:
    """The body in UTF-8, as JSON is exchanged: as sent when it already is (ASCII, or a
    charset label that does not match the bytes), else decoded from the charset its
    Content-Type declares (`application/json; charset=windows-1251`) or, when it declares
    none, NOVA_API_CHARSET names: the same text. A body in another charset that neither
    names stays as it is, for the client to refuse saying where (`_not_utf8`):
    guessing an encoding could land the wrong text."""
    if not charset or charset.lower().replace("_", "-") in ("utf-8", "utf8"):
        return body
    try:
        body.decode()
        return body
    except UnicodeDecodeError:
        pass
    try:
        return body.decode(charset).encode()
    except (LookupError, UnicodeDecodeError):
        return body


def _with_non_finite_numbers(body: bytes) -> Envelope | None:
    """The envelope of a body that is JSON but for NaN / ±Infinity literals, None for any
    other body. Such a page is taken as nonconforming: DuckDB reads those literals, and the
    rules quarantine the items that hold one, where retrying would fail the day for good."""
    readable = with_finite_stand_ins(body)
    if readable is None:
        return None
    try:
        return _ANY.decode(readable)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return None


def _server_message(body: bytes) -> str:
    body = body.removeprefix(BYTE_ORDER_MARK)
    try:
        message = msgspec.json.decode(body).get("message")
    except (msgspec.DecodeError, AttributeError):
        message = None
    return str(message) if message else body[:200].decode(errors="replace") or "no message"
