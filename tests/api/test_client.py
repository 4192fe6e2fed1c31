"""The client against the simulator over loopback HTTP: paging, retries, errors, secrets."""

from __future__ import annotations

import datetime as dt
import gzip
import json
import logging
import shutil
import ssl
import subprocess
import threading
import time
from contextlib import AbstractContextManager
from http.server import BaseHTTPRequestHandler

import httpx
import pytest

from nova_pipeline.api import (
    ApiResponseError,
    AuthError,
    CertificateError,
    ClientConfig,
    Endpoint,
    NovaClient,
    PageIgnoredError,
    PullStopped,
    RequestRejected,
    RetriesExhausted,
    RetryPolicy,
    TooManyPagesError,
    UnreadableBodyError,
)
from nova_pipeline.api.client import _not_utf8, without_lone_surrogates
from nova_pipeline.api.models import with_finite_stand_ins
from tests.conftest import DAY, loopback_api
from tests.simulator.test_contract import post, query

FAST_RETRY = RetryPolicy(max_attempts=30, deadline_s=60, backoff_base_s=0.01, backoff_cap_s=0.05)
TOKEN = "tok-7f3a9c1e5b-secret"


def client_for(sim, page_size=100, retry=FAST_RETRY, token="", read_timeout=5.0, **kw):
    endpoint = Endpoint(sim.api_url, token=token, read_timeout_s=read_timeout)
    return NovaClient(endpoint, ClientConfig(page_size=page_size, retry=retry, **kw))


def fetch(sim, selector="all", **kw) -> tuple[list, NovaClient]:
    with client_for(sim, **kw) as client:
        pages = list(client.pages(DAY, DAY, selector))
    return pages, client


def first_page_served(sim) -> bytes:
    """Page 0 of DAY's `all` pull as the simulator sends it, past any client."""
    return post(sim, query(DAY.strftime("%d-%m-%Y"), size=100)).content


def costs_by_sid(pages) -> dict[int, float]:
    return {i["sid"]: i["session_cost"] for p in pages for i in p.decoded_items()}


def test_pages_until_the_first_empty_page(simulator):
    pages, client = fetch(simulator)
    served = simulator.simulator.items(
        simulator.simulator.parse(
            b'{"filter":{"start":"18-11-2026","end":"18-11-2026"},"select":["all"]}'
        )
    )
    assert sum(p.item_count for p in pages) == len(served) > 300
    assert [p.page for p in pages] == list(range(len(pages)))
    assert [p.item_count == 0 for p in pages] == [False] * (len(pages) - 1) + [True]
    assert client.stats.requests == len(pages)
    first = pages[0]
    assert first.status == 200 and first.attempts == 1 and first.retry_reasons == ()
    assert first.request.body["filter"] == {"start": "18-11-2026", "end": "18-11-2026"}
    assert first.request.url.endswith("/api/report/call_sms")
    assert first.body.startswith(b'{"code":200')


def test_a_silently_capped_page_size_loses_nothing(start_simulator, simulator):
    capped = start_simulator(max_page_size=30)
    asked_big, _ = fetch(capped, page_size=1000)
    reference, _ = fetch(simulator)
    assert all(p.item_count <= 30 for p in asked_big)
    assert costs_by_sid(asked_big) == costs_by_sid(reference)


def test_group_selector_returns_only_the_groups_sims(simulator):
    pages, _ = fetch(simulator, selector="g_2")
    members = simulator.simulator.dataset.sim_ids_in_group(2)
    assert {i["id"] for p in pages for i in p.decoded_items()} == members


def test_a_byte_order_mark_before_every_body_is_dropped_and_nothing_else(
    start_simulator, simulator
):
    """JSON forbids sending one and lets a reader ignore it; msgspec and DuckDB refuse a
    body that starts with it, so a server that sends it once failed every pull."""
    pages, client = fetch(start_simulator(faults={"byte_order_mark": 1.0}))
    reference, _ = fetch(simulator)
    assert [p.body for p in pages] == [p.body for p in reference]
    assert [p.conforms for p in pages] == [True] * len(pages)
    assert client.stats.retries == 0


def test_a_page_with_a_nan_cost_is_taken_at_once_for_the_rules_to_judge(start_simulator):
    """NaN is what Python's `json.dumps` writes for a float that is not finite. msgspec
    refuses it as malformed JSON: the page was once retried as a broken body, then failed
    the day on every pull."""
    faulty = start_simulator(faults={"bad_items": 1.0})
    pages, client = fetch(faulty, page_size=50)
    made = faulty.simulator.injected_bad_items.values()
    nans = sum(kind == "cost_not_finite" for injected in made for kind, _ in injected)
    with_nan = [p for p in pages if b'"session_cost":NaN' in p.body]
    assert nans and len(with_nan) <= nans
    assert client.stats.retries == 0
    assert all(not p.conforms and p.attempts == 1 for p in with_nan)
    assert [p.item_count for p in with_nan] == [len(p.decoded_items()) for p in with_nan]
    costs = [i["session_cost"] for p in with_nan for i in p.decoded_items()]
    assert sum(cost != cost for cost in costs) == nans


@pytest.mark.parametrize(
    ("body", "readable"),
    [
        (b'{"a":NaN}', b'{"a":0e0}'),
        (b'{"a": -Infinity ,"b":[NaN,Infinity]}', b'{"a": -0e000000 ,"b":[0e0,0e000000]}'),
        (b'{"a":"\\\\","b":NaN}', b'{"a":"\\\\","b":0e0}'),
        (b'{"NaN":"x NaN","b":"\\"NaN"}', None),
        (b'{"a":-NaN}', None),
        (b'{"a":1NaN}', None),
        (b'{"a":NaNa}', None),
    ],
)
def test_only_non_finite_literals_standing_as_values_get_stand_ins(body, readable):
    """Never inside a string (a key, a name, after an escaped quote), never a form Python's
    reader and DuckDB's would not take alike; offsets kept."""
    assert with_finite_stand_ins(body) == readable
    assert readable is None or len(readable) == len(body)


@pytest.mark.parametrize(
    "fault",
    ["rate_limit", "server_error", "slow", "disconnect", "malformed_json", "wrong_encoding"],
)
def test_each_transport_fault_is_retried_to_the_same_items(start_simulator, simulator, fault):
    faulty = start_simulator(faults={fault: 0.4}, retry_after=0, slow_seconds=1.0)
    pages, client = fetch(faulty, read_timeout=0.3, page_size=20)
    reference, _ = fetch(simulator)
    assert costs_by_sid(pages) == costs_by_sid(reference)
    assert client.stats.retries > 0
    assert sum(p.attempts - 1 for p in pages) <= client.stats.retries


def test_all_faults_but_ignore_page_give_exactly_the_fault_free_items(start_simulator, simulator):
    faulty = start_simulator(
        faults={
            "rate_limit": 0.2,
            "server_error": 0.2,
            "slow": 0.1,
            "disconnect": 0.1,
            "malformed_json": 0.1,
            "wrong_encoding": 0.1,
            "bad_items": 0.3,
            "duplicates": 0.3,
        },
        retry_after=0,
        slow_seconds=1.0,
    )
    pages, client = fetch(faulty, read_timeout=0.3, page_size=20)
    reference, _ = fetch(simulator)
    injected = {raw for made in faulty.simulator.injected_bad_items.values() for _, raw in made}
    served = [bytes(raw) for p in pages for raw in p.raw_items()]
    valid = [
        i
        for p in pages
        for raw, i in zip(p.raw_items(), p.decoded_items(), strict=True)
        if bytes(raw) not in injected
    ]
    assert injected and len(served) - len(valid) == len(injected)
    flagged = [p.page for p in pages if not p.conforms]
    assert flagged == [p.page for p in pages if {bytes(r) for r in p.raw_items()} & injected]
    assert len(valid) > len({i["sid"] for i in valid}), "duplicates were served"
    assert {i["sid"]: i["session_cost"] for i in valid} == costs_by_sid(reference)
    reasons = " ".join(client.stats.by_reason)
    for reason in (
        "HTTP 429",
        "HTTP 50",
        "timeout",
        "connection error",
        "invalid JSON",
        "body not in its Content-Encoding",
    ):
        assert reason in reasons


def test_retry_after_is_honoured(start_simulator):
    sim = start_simulator(faults={"rate_limit": 0.5}, retry_after=1)
    started = time.monotonic()
    with client_for(sim) as client:
        page = client.fetch_page(DAY, DAY, "all", 0)
        while page.attempts == 1:
            page = client.fetch_page(DAY, DAY, "all", page.page + 1)
    assert "HTTP 429" in page.retry_reasons
    assert time.monotonic() - started >= 1.0 * (page.attempts - 1)


def test_a_stopped_client_ends_its_wait_for_a_retry_at_once(start_simulator):
    """Another day of the pull failed, or the run was interrupted, while this client waits
    out a Retry-After of five minutes: it stops then, without a request more."""
    sim = start_simulator(faults={"rate_limit": 1.0}, retry_after=300)
    client = client_for(sim, retry=RetryPolicy(max_attempts=3, deadline_s=600))
    ended: list[BaseException] = []

    def page() -> None:
        try:
            list(client.pages(DAY, DAY, "all"))
        except BaseException as exc:
            ended.append(exc)

    paging = threading.Thread(target=page, daemon=True)
    paging.start()
    deadline = time.monotonic() + 60
    while sim.simulator.requests < 1:
        assert time.monotonic() < deadline, "no request made"
        time.sleep(0.01)
    client.stop()
    paging.join(timeout=60)
    assert not paging.is_alive(), "still waiting out the Retry-After"
    [error] = ended
    assert isinstance(error, PullStopped)
    assert str(error) == f"stopped before page 0 of all {DAY}..{DAY}"
    assert sim.simulator.requests == 1


def test_ignore_page_raises_a_clear_error_instead_of_looping(start_simulator):
    sim = start_simulator(faults={"ignore_page": 1.0})
    with pytest.raises(PageIgnoredError, match="ignored the page number"):
        fetch(sim)


@pytest.mark.parametrize(
    ("fault", "found", "said"),
    [
        (
            "lone_surrogate",
            rb"\ud83d",
            "a lone UTF-16 surrogate escape, \\ud83d at byte {at} (a string cut inside a "
            "character, such as an emoji); the provider must send that string whole, or set "
            "NOVA_API_LONE_SURROGATES=replace to read it with U+FFFD in that place",
        ),
        (
            "windows_1251",
            b"\xcf",
            "bytes that are not UTF-8, b'\\xcf\\xee\\xe5\\xe7' at byte {at} (text in another "
            "encoding, such as windows-1251?); the provider must send UTF-8 or name its charset "
            "in the Content-Type; if it never does, set NOVA_API_CHARSET to the one it uses",
        ),
    ],
)
def test_a_name_not_in_unicode_fails_at_once_saying_where(start_simulator, fault, found, said):
    """A name cut inside an emoji, or sent in windows-1251, is the same on every retry: no
    retries, and the error says what and where (msgspec's own words for the first were
    "Input data was truncated")."""
    sim = start_simulator(faults={fault: 1.0})
    with client_for(sim) as client, pytest.raises(UnreadableBodyError) as error:
        client.fetch_page(DAY, DAY, "all", 0)
    served = first_page_served(sim)
    assert said.format(at=served.index(found)) in str(error.value)
    assert '"page":0' in str(error.value)
    assert client.stats.requests == 1


def test_a_lone_surrogate_is_read_as_u_fffd_when_the_setting_says_so(
    start_simulator, simulator, caplog
):
    """NOVA_API_LONE_SURROGATES=replace: each page's last name, cut inside an emoji, is
    read and landed with \\ufffd in place of the half character, six bytes for six, and
    each replacement is said in the log with its request and byte; every other byte of
    the page is as served."""
    caplog.set_level(logging.WARNING)
    sim = start_simulator(faults={"lone_surrogate": 1.0})
    pages, client = fetch(sim, lone_surrogates="replace")
    reference, _ = fetch(simulator)
    with_items = [page for page in pages if page.item_count]
    assert client.stats.retries == 0 and all(page.conforms for page in pages)
    assert client.stats.lone_surrogates_replaced == len(with_items) > 2
    for page, clean in zip(pages, reference, strict=True):
        items, clean_items = page.decoded_items(), clean.decoded_items()
        if clean_items:
            assert items[-1]["name"] == "Gate \ufffd" and items[:-1] == clean_items[:-1]
            assert items[-1] | {"name": None} == clean_items[-1] | {"name": None}
    served = first_page_served(sim)
    assert pages[0].body == served.replace(rb"\ud83d", rb"\ufffd")
    warnings = [r.getMessage() for r in caplog.records if "lone UTF-16" in r.getMessage()]
    assert len(warnings) == len(with_items)
    at = served.index(rb"\ud83d")
    assert f"replaced 1 lone UTF-16 surrogate escape (\\ud83d at byte {at})" in warnings[0]
    assert '"page":0' in warnings[0] and "NOVA_API_LONE_SURROGATES=replace" in warnings[0]


@pytest.mark.parametrize(
    ("sent", "read", "found"),
    [
        (rb'"Gate \ud83d"', "Gate \ufffd", ["\\ud83d at byte 6"]),
        (rb'"\ude00 low first"', "\ufffd low first", ["\\ude00 at byte 1"]),
        (rb'"cut \ud83d\ud83d\ude00"', "cut \ufffd\U0001f600", ["\\ud83d at byte 5"]),
        (rb'"\\\ud83d"', "\\\ufffd", ["\\ud83d at byte 3"]),
        (rb'"\ud83d\ude00 whole"', "\U0001f600 whole", []),
        (rb'"C:\\ud83d"', "C:\\ud83d", []),
        (rb'"C:\\\\\ude00\\"', "C:\\\\\ufffd\\", ["\\ude00 at byte 7"]),
    ],
)
def test_only_a_surrogate_escape_without_its_other_half_is_replaced(sent, read, found):
    """Half of a pair, high or low, is replaced; a whole pair, and a `\\u` after an escaped
    backslash (text, not an escape), are left as sent."""
    mended, said = without_lone_surrogates(sent)
    assert (json.loads(mended), said) == (read, found)
    assert len(mended) == len(sent)


@pytest.mark.parametrize(
    ("fault", "charset"),
    [
        ("declared_windows_1251", ""),
        ("declared_windows_1251", "koi8-r"),
        ("windows_1251", "windows-1251"),
    ],
)
def test_a_page_in_a_charset_its_content_type_or_the_setting_names_is_read_in_it(
    start_simulator, simulator, fault, charset
):
    """`application/json; charset=windows-1251`: HTTP says how to read the bytes, so the
    page is the same text in UTF-8, not an unreadable body. A provider that never says
    is read in NOVA_API_CHARSET (`charset`), which a declared charset overrides; with
    neither, the page fails (the test above)."""
    pages, client = fetch(start_simulator(faults={fault: 1.0}), charset=charset)
    reference, _ = fetch(simulator)
    assert client.stats.retries == 0 and all(p.conforms for p in pages)
    for page, clean in zip(pages, reference, strict=True):
        items, clean_items = page.decoded_items(), clean.decoded_items()
        if clean_items:
            assert items[-1]["name"] == "Поезд-7" and items[:-1] == clean_items[:-1]
            assert '"name":"Поезд-7"}'.encode() in page.body, "kept as UTF-8"
        else:
            assert page.body == clean.body


def test_a_body_cut_short_inside_a_character_is_left_to_the_retries():
    """A body cut short may end inside a UTF-8 character (here "П", 0xd0 0x9f): a retry can
    mend that one, so it is not called unreadable; a wrong byte before the end is."""
    cut = '{"items":[{"name":"П'.encode()[:-1]
    assert _not_utf8(cut) is None
    assert _not_utf8(cut + b'x"}]}').startswith("bytes that are not UTF-8, b'\\xd0x\"}' at byte 19")


def test_page_cap_stops_a_runaway_query(simulator):
    with (
        client_for(simulator, page_size=10, max_pages=3) as client,
        pytest.raises(TooManyPagesError, match=r"after 3 pages.*NOVA_MAX_PAGES"),
    ):
        list(client.pages(DAY, DAY))
    assert client.stats.requests == 3


def test_wrong_token_fails_at_once_naming_the_setting_not_the_token(start_simulator, caplog):
    sim = start_simulator(token="the-right-one")
    caplog.set_level(logging.DEBUG)
    with client_for(sim, token=TOKEN) as client, pytest.raises(AuthError) as error:
        list(client.pages(DAY, DAY))
    assert "NOVA_API_TOKEN" in str(error.value)
    assert TOKEN not in str(error.value) and TOKEN not in repr(error.value)
    assert client.stats.requests == 1
    assert TOKEN not in caplog.text


def test_the_token_is_sent_but_never_recorded(start_simulator, caplog):
    sim = start_simulator(token=TOKEN, faults={"server_error": 0.3})
    caplog.set_level(logging.DEBUG)
    pages, client = fetch(sim, token=TOKEN)
    assert pages and client.stats.retries > 0
    for page in pages:
        assert TOKEN not in page.request.fingerprint
        assert TOKEN.encode() not in page.body
        assert TOKEN not in repr(page)
    assert TOKEN not in caplog.text


def test_blanks_around_the_token_are_not_sent(start_simulator):
    sim = start_simulator(token=TOKEN)
    pages, _ = fetch(sim, token=f" {TOKEN}\r\n")
    assert pages


def test_a_bad_request_carries_the_servers_message(simulator):
    with client_for(simulator) as client, pytest.raises(RequestRejected) as error:
        list(client.pages(DAY, DAY, "g_99"))
    assert "HTTP 400" in str(error.value) and "no group with id 99" in str(error.value)
    assert client.stats.requests == 1


def test_retries_stop_at_the_attempt_limit_with_the_reasons(start_simulator, caplog):
    sim = start_simulator(faults={"server_error": 1.0})
    policy = RetryPolicy(max_attempts=3, deadline_s=30, backoff_base_s=0.01, backoff_cap_s=0.01)
    client = client_for(sim, retry=policy)
    with client, pytest.raises(RetriesExhausted, match=r"after 3 attempts.*HTTP 50") as error:
        list(client.pages(DAY, DAY, "all"))
    assert "NOVA_API_URL" not in str(error.value), "the server answered: it is reachable"
    assert (client.stats.requests, client.stats.retries) == (3, 2)
    retrying = [r.getMessage() for r in caplog.records if r.getMessage().startswith("retrying")]
    assert [m.split("attempt ")[-1][0] for m in retrying] == ["1", "2"]


def test_retries_stop_at_the_deadline(start_simulator):
    sim = start_simulator(faults={"slow": 1.0}, slow_seconds=1.0)
    policy = RetryPolicy(max_attempts=100, deadline_s=1.0, backoff_base_s=0.5, backoff_cap_s=0.5)
    started = time.monotonic()
    with pytest.raises(RetriesExhausted, match="timeout"):
        fetch(sim, retry=policy, read_timeout=0.2)
    assert time.monotonic() - started < 10


def test_unreachable_server_is_a_connection_error_retried_then_reported():
    endpoint = Endpoint("http://127.0.0.1:9/api", connect_timeout_s=0.2)
    policy = RetryPolicy(max_attempts=2, deadline_s=5, backoff_base_s=0.01, backoff_cap_s=0.01)
    with (
        NovaClient(endpoint, ClientConfig(retry=policy)) as client,
        pytest.raises(RetriesExhausted, match="connection error"),
    ):
        client.fetch_page(DAY, DAY, "all", 0)


def test_endpoint_speaks_through_any_httpx_transport():
    """The exact request sent, and a gzipped answer read as JSON."""
    seen: list[httpx.Request] = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        body = gzip.compress(b'{"code":400,"message":"unknown selector"}')
        return httpx.Response(200, content=body, headers={"Content-Encoding": "gzip"})

    for token in (TOKEN, ""):
        endpoint = Endpoint(
            "http://nova.test/api/", token=token, transport=httpx.MockTransport(handler)
        )
        with (
            NovaClient(endpoint) as client,
            pytest.raises(ApiResponseError, match=r"body code 400 .*: unknown selector"),
        ):
            client.fetch_page(DAY, DAY, "all", 0)
    request, tokenless = seen
    assert "Authorization" not in tokenless.headers
    assert request.method == "POST"
    assert str(request.url) == "http://nova.test/api/report/call_sms"
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    assert request.headers["Accept-Encoding"] == "gzip, deflate"
    assert request.headers["Content-Type"] == "application/json"
    assert request.extensions["timeout"] == {
        "connect": 10.0,
        "read": 60.0,
        "write": 60.0,
        "pool": 60.0,
    }
    assert json.loads(request.content) == {
        "filter": {"start": "18-11-2026", "end": "18-11-2026"},
        "select": ["all"],
        "page": 0,
        "size": 1000,
    }


def test_endpoint_goes_through_the_proxy_the_environment_names(simulator, monkeypatch):
    """HTTP_PROXY and ALL_PROXY are honoured (here a dead one: every attempt fails to
    connect) and NO_PROXY exempts a host from them, as an httpx.Client would do."""
    policy = RetryPolicy(max_attempts=2, deadline_s=5, backoff_base_s=0.01, backoff_cap_s=0.01)
    for name in ("HTTP_PROXY", "ALL_PROXY", "NO_PROXY"):
        monkeypatch.delenv(name, raising=False)
        monkeypatch.delenv(name.lower(), raising=False)
    for name in ("HTTP_PROXY", "ALL_PROXY"):
        monkeypatch.setenv(name, "http://127.0.0.1:9")
        with (
            client_for(simulator, retry=policy) as client,
            pytest.raises(RetriesExhausted, match="connection error"),
        ):
            client.fetch_page(DAY, DAY, "all", 0)
        monkeypatch.delenv(name)
    monkeypatch.setenv("ALL_PROXY", "http://127.0.0.1:9")
    monkeypatch.setenv("NO_PROXY", "127.0.0.1")
    with client_for(simulator, retry=policy) as client:
        assert client.fetch_page(DAY, DAY, "all", 0).item_count == 100


@pytest.mark.parametrize(
    ("start", "end", "selector", "page", "message"),
    [
        (DAY, DAY, "x_1", 0, "unknown selector 'x_1'"),
        (DAY, DAY, "s_999999", 0, "no SIM card with id 999999"),
        (DAY + dt.timedelta(days=1), DAY, "all", 0, "is after filter.end"),
        (DAY, DAY, "all", -1, "page must be an integer >= 0"),
    ],
)
def test_every_400_reaches_the_caller_with_the_servers_message(
    simulator, start, end, selector, page, message
):
    with client_for(simulator) as client, pytest.raises(RequestRejected) as error:
        client.fetch_page(start, end, selector, page)
    assert "HTTP 400" in str(error.value) and message in str(error.value)
    assert client.stats.requests == 1


def answered_by(*responses: httpx.Response | Exception) -> NovaClient:
    """A client whose network is a scripted series of answers (httpx's MockTransport)."""
    script = iter(responses)

    def handler(request: httpx.Request) -> httpx.Response:
        answer = next(script)
        if isinstance(answer, Exception):
            raise answer
        return answer

    policy = RetryPolicy(max_attempts=2, deadline_s=5, backoff_base_s=0.01, backoff_cap_s=0.01)
    endpoint = Endpoint("http://nova.test/api", transport=httpx.MockTransport(handler))
    return NovaClient(endpoint, ClientConfig(retry=policy))


def answering_every_post(
    status: int, headers: dict[str, str], body: bytes, tls: ssl.SSLContext | None = None
) -> AbstractContextManager[str]:
    """A loopback HTTP(S) server (not the simulator) answering every POST alike: the API's
    URL."""

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            self.send_response(status)
            for name, value in {**headers, "Content-Length": str(len(body))}.items():
                self.send_header(name, value.format(path=self.path))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args: object) -> None:
            pass

    return loopback_api(Handler, tls)


def test_a_redirect_fails_at_once_naming_where_it_points():
    """It was read as a broken body, retried to the last attempt, and reported as
    "invalid JSON body": nothing said the URL had moved (here: to HTTPS)."""
    moved = {"Location": "https://nova.example{path}"}
    with (
        answering_every_post(301, moved, b"") as url,
        NovaClient(Endpoint(url, token=TOKEN), ClientConfig(retry=FAST_RETRY)) as client,
        pytest.raises(RequestRejected, match="HTTP 301") as error,
    ):
        client.fetch_page(DAY, DAY, "all", 0)
    assert "redirects to https://nova.example/api/report/call_sms" in str(error.value)
    assert "NOVA_API_URL" in str(error.value) and TOKEN not in str(error.value)
    assert client.stats.requests == 1


@pytest.mark.parametrize(("status", "retried"), [(408, True), (522, True), (501, False)])
def test_every_server_error_is_retried_but_those_that_say_it_never_will_work(status, retried):
    """A CDN's own 5xx (Cloudflare's 522: the origin did not answer in time) failed the run at
    once as a rejected request, though the docs said every 5xx is retried."""
    retry = RetryPolicy(max_attempts=3, deadline_s=30, backoff_base_s=0.01, backoff_cap_s=0.01)
    body = b'{"code":%d,"message":"origin unreachable"}' % status
    with (
        answering_every_post(status, {}, body) as url,
        NovaClient(Endpoint(url), ClientConfig(retry=retry)) as client,
        pytest.raises(RetriesExhausted if retried else RequestRejected) as error,
    ):
        client.fetch_page(DAY, DAY, "all", 0)
    assert f"HTTP {status}" in str(error.value)
    assert client.stats.requests == (3 if retried else 1)


@pytest.mark.skipif(not shutil.which("openssl"), reason="makes its certificate with openssl")
def test_a_certificate_not_trusted_fails_at_once_and_ssl_cert_file_mends_it(tmp_path, monkeypatch):
    """As behind a proxy that re-signs HTTPS: it was retried as a connection error to the
    last attempt, then asked whether NOVA_API_URL was reachable."""
    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "2"),
            *("-keyout", key, "-out", cert, "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    empty = b'{"code":200,"message":"OK","result":{"items":[]}}'
    with answering_every_post(200, {}, empty, tls) as url:
        with (
            NovaClient(Endpoint(url, token=TOKEN), ClientConfig(retry=FAST_RETRY)) as client,
            pytest.raises(CertificateError, match=r"not accepted \(self-signed certificate\)"),
        ):
            client.fetch_page(DAY, DAY, "all", 0)
        assert client.stats.requests == 1
        monkeypatch.setenv("SSL_CERT_FILE", str(cert))
        with NovaClient(Endpoint(url), ClientConfig(retry=FAST_RETRY)) as client:
            assert client.fetch_page(DAY, DAY, "all", 0).status == 200


@pytest.mark.parametrize(
    ("code", "error", "attempts"),
    [(503, RetriesExhausted, 3), (401, AuthError, 1), (404, ApiResponseError, 1)],
)
def test_a_code_in_the_body_is_read_as_its_http_status_would_be(code, error, attempts):
    """HTTP 200 with the error in the body's `code` (the provider's page says only that 200
    is success): a 503 there was not retried, a 401 did not name NOVA_API_TOKEN."""
    retry = RetryPolicy(max_attempts=3, deadline_s=30, backoff_base_s=0.01, backoff_cap_s=0.01)
    body = b'{"code":%d,"message":"said by the server"}' % code
    with (
        answering_every_post(200, {}, body) as url,
        NovaClient(Endpoint(url, token=TOKEN), ClientConfig(retry=retry)) as client,
        pytest.raises(error, match=f"body code {code}") as raised,
    ):
        client.fetch_page(DAY, DAY, "all", 0)
    assert client.stats.requests == attempts
    assert ("NOVA_API_TOKEN" in str(raised.value)) == (code == 401)
    assert TOKEN not in str(raised.value)
    assert code == 503 or "said by the server" in str(raised.value)


def test_a_body_compressed_in_a_way_the_client_did_not_ask_for_fails_at_once():
    """httpx leaves a Content-Encoding it cannot undo (brotli, here) as it came: it was
    retried as a broken body, and reported as bytes that go wrong at byte 0."""
    with (
        answering_every_post(200, {"Content-Encoding": "br"}, b"\x1b\x2f\x00\xf8") as url,
        NovaClient(Endpoint(url), ClientConfig(retry=FAST_RETRY)) as client,
        pytest.raises(UnreadableBodyError, match="is compressed with br, which the client"),
    ):
        client.fetch_page(DAY, DAY, "all", 0)
    assert client.stats.requests == 1


PORTAL = b"<!DOCTYPE html><html><title>Corporate proxy: sign in</title></html>"
TAB_IN_A_NAME = b'{"code":200,"message":"OK","result":{"items":[{"sid":1,"name":"Gate\t7"}]}}'


@pytest.mark.parametrize(
    ("body", "said"),
    [
        (PORTAL, "goes wrong at byte 0, in '" + PORTAL[:60].decode() + "'"),
        (
            TAB_IN_A_NAME,
            "goes wrong at byte 67, in "
            """':200,"message":"OK","result":{"items":[{"sid":1,"name":"Gate\\t7"}]}}'""",
        ),
        (TAB_IN_A_NAME[:46], """began '{"code":200,"message":"OK","result":{"items":['"""),
    ],
)
def test_a_page_that_is_not_json_is_quoted_where_it_goes_wrong_when_the_retries_run_out(body, said):
    """A proxy or captive portal answering 200 with its own page, or a raw tab in a name (a
    hand-made JSON writer): the reasons alone said only "invalid character (byte N)"."""
    retry = RetryPolicy(max_attempts=3, deadline_s=30, backoff_base_s=0.01, backoff_cap_s=0.01)
    with (
        answering_every_post(200, {"Content-Type": "text/html"}, body) as url,
        NovaClient(Endpoint(url), ClientConfig(retry=retry)) as client,
        pytest.raises(RetriesExhausted, match="gave up after 3 attempts") as error,
    ):
        client.fetch_page(DAY, DAY, "all", 0)
    assert str(error.value).endswith(f"The last body it could not read {said}")
    assert "NOVA_API_URL" not in str(error.value)


def test_a_403_is_a_refused_token_and_a_4xx_without_json_shows_its_body():
    refused = httpx.Response(403, json={"message": "token expired"})
    with (
        answered_by(refused) as client,
        pytest.raises(AuthError, match=r"HTTP 403 \(token expired\): check NOVA_API_TOKEN"),
    ):
        client.fetch_page(DAY, DAY, "all", 0)
    html = httpx.Response(404, content=b"<html>404 Not Found: /api/report/call_sms</html>")
    with (
        answered_by(html) as client,
        pytest.raises(RequestRejected, match=r"HTTP 404 .*: <html>404 Not Found: /api/"),
    ):
        client.fetch_page(DAY, DAY, "all", 0)
    listed = httpx.Response(400, json=["filter.start is required"])
    with (
        answered_by(listed) as client,
        pytest.raises(RequestRejected, match=r'HTTP 400 .*: \["filter.start is required"\]'),
    ):
        client.fetch_page(DAY, DAY, "all", 0)


def test_a_body_code_other_than_200_is_an_error_and_no_result_ends_the_query():
    refused = httpx.Response(200, json={"code": 0, "message": "quota exceeded"})
    with (
        answered_by(refused) as client,
        pytest.raises(ApiResponseError, match=r"body code 0 .*: quota exceeded"),
    ):
        client.fetch_page(DAY, DAY, "all", 0)
    empty = httpx.Response(200, json={"code": 200, "message": "ok", "result": None})
    with answered_by(empty) as client:
        (page,) = client.pages(DAY, DAY)
    assert (page.page, page.item_count, page.conforms) == (0, 0, True)
    assert client.stats.requests == 1


def test_no_wait_passes_the_retry_deadline(monkeypatch):
    """On a clock the test moves (each attempt 0.2 s, each wait the server's 1 s): the
    client gives up when the next wait would end past the deadline, not after it.

    The client waits on its stop event, so the clock stands in for that event too: one
    that is never set, whose wait moves the clock instead of the test's time."""
    import nova_pipeline.api.client as client_module

    class Clock:
        now = 0.0

        def monotonic(self) -> float:
            return self.now

        def wait(self, seconds: float) -> bool:
            self.now += seconds
            return False

        def is_set(self) -> bool:
            return False

    clock = Clock()
    monkeypatch.setattr(client_module, "time", clock)

    def busy(request: httpx.Request) -> httpx.Response:
        clock.now += 0.2
        return httpx.Response(503, headers={"Retry-After": "1"})

    policy = RetryPolicy(max_attempts=10, deadline_s=2.3)
    endpoint = Endpoint("http://nova.test/api", transport=httpx.MockTransport(busy))
    with (
        NovaClient(endpoint, ClientConfig(retry=policy)) as client,
        pytest.raises(RetriesExhausted, match=r"after 2 attempts, the next wait \(1.0 s\)"),
    ):
        client._stopped = clock
        client.fetch_page(DAY, DAY, "all", 0)
    assert clock.now == pytest.approx(1.4)


def test_the_url_is_questioned_only_when_no_attempt_reached_the_server():
    refused = httpx.ConnectError("connection refused")
    with (
        answered_by(refused, refused) as client,
        pytest.raises(RetriesExhausted, match=r"Is NOVA_API_URL \(http://nova.test/api\) right"),
    ):
        client.fetch_page(DAY, DAY, "all", 0)
    with (
        answered_by(refused, httpx.Response(503)) as client,
        pytest.raises(RetriesExhausted, match="HTTP 503") as error,
    ):
        client.fetch_page(DAY, DAY, "all", 0)
    assert "NOVA_API_URL" not in str(error.value)


@pytest.mark.parametrize("fault", ["disconnect", "slow"])
def test_a_server_that_drops_or_stalls_every_answer_is_not_called_unreachable(
    start_simulator, fault
):
    sim = start_simulator(faults={fault: 1.0}, slow_seconds=1.0)
    retry = RetryPolicy(max_attempts=3, deadline_s=30, backoff_base_s=0.01, backoff_cap_s=0.01)
    expected = {"disconnect": "connection error (RemoteProtocolError)", "slow": "ReadTimeout"}
    with (
        client_for(sim, retry=retry, read_timeout=0.3) as client,
        pytest.raises(RetriesExhausted, match=r"gave up after 3 attempts") as error,
    ):
        client.fetch_page(DAY, DAY, "all", 0)
    assert str(error.value).count(expected[fault]) == 3
    assert "NOVA_API_URL" not in str(error.value)
