"""Random pages, the contract read a second time. Pages of random items, most valid, some
with a field replaced by an awkward JSON value, dropped or sent twice, are served over
loopback HTTP and pulled through Dagster; every item must end in `call_sms_events` with
the values an independent reading of the contract in Python gives it, or in
`call_sms_rejects`, whatever page it came on and whatever sat beside it (a page of valid
items takes the fast path, any other the rules). The cases of `test_contract_paths.py`
are written by hand one at a time; these mix them. A seed that fails is reproduced by
running its case alone."""

from __future__ import annotations

import datetime as dt
import json
import random
import re
from collections import Counter
from contextlib import AbstractContextManager
from decimal import ROUND_HALF_UP, Decimal
from types import SimpleNamespace
from zoneinfo import ZoneInfo

import dagster as dg
import pytest

from nova_pipeline.partitions import DAILY
from tests.conftest import Pipeline, answering_json, run_logs

DAY = dt.date(2026, 11, 18)
ZONE = ZoneInfo(DAILY.timezone)
DAY_START = int(dt.datetime(2026, 11, 18, tzinfo=ZONE).timestamp())
DAY_END = int(dt.datetime(2026, 11, 19, tzinfo=ZONE).timestamp())
TYPES = ("call", "in_sms", "out_sms", "ussd")
INT64 = (-(2**63), 2**63 - 1)
YEARS_1_TO_9999 = (-62_135_596_800, 253_402_300_799)
REQUIRED = ("sid", "date", "type", "to_number", "session_cost", "id", "original_number", "iccid")

AWKWARD = [
    *(b"0", b"-0", b"-1", b"1.0", b"1e3", b"-0.0", b"0e0", b"5e-324", b"-1e-9", b"1e-7"),
    *(b"0.0000005", b"0.0000004999", b"0.1234565", b"0.10000000000000001", b"12.5e-1"),
    *(b"999999999999.999999", b"999999999999.9999995", b"1e12", b"1e400", b"-1e-400"),
    *(b"1234567.12345649999999", b"%d" % (DAY_START - 1), b"%d" % DAY_END),
    *(b"9223372036854775807", b"9223372036854775808", b"-9223372036854775809"),
    *(b"18446744073709551616", b"123456789012345678901234567890"),
    *(b"253402300799", b"253402300800", b"-62135596800", b"-62135596801", b"1794942000.0"),
    *(b"NaN", b"Infinity", b"-Infinity", b"true", b"false", b"null"),
    *(b'""', b'"0.5"', b'"NaN"', b'"call "', b'"CALL"', b'"\\u0063all"', b'"in_sms"'),
    *(b'"\\u0000"', b'"\\ud800"', b'"x\\udc00"', b'"\\ud83d\\ude00"', b'"\\\\ud800"'),
    *('"é ü 中 😀"'.encode(), b'"a\\"b, NaN"', b'"\\/\\t\\n"', b'"' + b"x" * 3000 + b'"'),
    *(b"[]", b"{}", b"[1, null]", b'{"sid": 1}', b'{"x": [NaN, {"y": null}]}'),
]
"""Values that test a reader: edges of each type's range, number forms, escapes, strings
cut inside a character, literals that are not JSON, containers."""

STRINGS = [
    b'""',
    b'"\\u0000"',
    b'"\\ud83d\\ude00"',
    b'"x\\udc00"',
    '"é 中"'.encode(),
    b'"a\\"b, NaN"',
]
INTEGERS = [b"-0", b"9223372036854775807", b"-9223372036854775808"]
EDGES = {
    b"sid": INTEGERS,
    b"date": [b"%d" % t for t in (DAY_START - 1, DAY_START, DAY_END - 1, DAY_END, 0)],
    b"type": [b'"\\u0063all"', b'"ussd"'],
    b"to_number": STRINGS,
    b"session_cost": [
        *(b"3", b"-0", b"-0.0", b"0e0", b"12.5e-1", b"5e-324", b"-1e-400", b"1e-7"),
        *(b"0.0000005", b"0.0000004999", b"0.1234565", b"999999999999.9"),
        *(b"-0.01", b"-0.0000004", b"-1e-7"),
        *(b"999999999999.999998", b"1234567.12345649999999"),
    ],
    b"id": INTEGERS,
    b"original_number": STRINGS,
    b"iccid": STRINGS,
    b"name": STRINGS,
}
"""Values of each field at the edge of what it may be: most are valid."""

EXTRA_KEYS = [b"roaming", b"", b"Sid"]
"""Keys added to an item that the contract does not know."""

KEYS_AGAIN = {b"name": b"name", b"sid": b"sid", b"\\u0073id": b"sid", b"s\\u0069d": b"sid"}
"""Contract keys added again, spelled plainly or with escapes: the item sends a key twice.
One such item on a page the client finds conforming sends the whole run to the rules
(`transforms/events.py::run_staged`), so only some runs add them, each with a value at
the edge of the key it repeats (most are valid, which the client's check then takes)."""

BLANKS = [b"", b" ", b"\n", b"\t ", b"\r\n  "]


def random_item(
    rng: random.Random, sid: int, date: int, rate: float, extra_keys: list[bytes]
) -> bytes:
    """A valid item; each field replaced with chance `rate` by a value at its edge or an
    awkward one, or dropped with chance `rate / 4`; sometimes a key added or the whole
    item replaced."""
    if rng.random() < rate / 6:
        return rng.choice(AWKWARD)
    cost = rng.choice([b"0", b"0.04", b"%d.%06d" % (rng.randrange(3), rng.randrange(10**6))])
    fields = [
        (b"sid", b"%d" % sid),
        (b"date", b"%d" % date),
        (b"type", b'"%s"' % rng.choice(TYPES).encode()),
        (b"to_number", b'"+7707%07d"' % rng.randrange(10**7)),
        (b"session_cost", cost),
        (b"id", b"%d" % rng.randrange(1, 40)),
        (b"original_number", b'"+7701%07d"' % rng.randrange(10**7)),
        (b"iccid", b'"897019%013d"' % rng.randrange(10**13)),
        (b"name", rng.choice([b'"Gate-7"', b"null"])),
    ]
    item = []
    for key, value in fields:
        roll = rng.random()
        if roll < rate / 4:
            continue
        if roll < rate:
            value = rng.choice(EDGES[key] if rng.random() < 0.5 else AWKWARD)
        item.append((key, value))
    if rng.random() < rate:
        key = rng.choice(extra_keys)
        value = rng.choice(EDGES[KEYS_AGAIN[key]] if key in KEYS_AGAIN else AWKWARD)
        item.insert(rng.randrange(len(item) + 1), (key, value))
    if rng.random() < 0.1:
        rng.shuffle(item)
    blank = rng.choice(BLANKS)
    pairs = (b'"%s"%s:%s%s' % (key, blank, blank, value) for key, value in item)
    return b"{" + blank + (b"," + blank).join(pairs) + blank + b"}"


def random_pages(seed: int, pages: int, keys_twice: bool) -> list[list[bytes]]:
    """The items of pages 0..pages-1, as sent: about half the pages free of awkward values.
    One item in ten is timed outside the day (the provider's days overlap), and one in
    twelve is a sid sent before, on its page or an earlier one."""
    rng = random.Random(seed)
    extra_keys = EXTRA_KEYS + list(KEYS_AGAIN) * keys_twice
    sent: list[int] = []
    served = []
    for page in range(pages):
        rate = rng.choice([0.0, 0.0, 0.0, 0.03, 0.1, 0.3])
        items = []
        for i in range(rng.randint(1, 8)):
            date = DAY_START + rng.randrange(86_400)
            if rng.random() < 0.1:
                date = rng.choice([DAY_START - 1 - rng.randrange(3600), DAY_END + i])
            if sent and rng.random() < 0.08:
                sid = rng.choice(sent)
            else:
                sid = 10**6 + 100 * page + i
                sent.append(sid)
            items.append(random_item(rng, sid, date, rate, extra_keys))
        served.append(items)
    return served


def body(items: list[bytes], blank: bytes) -> bytes:
    return (
        b'{"code":200,'
        + blank
        + b'"message":"OK","result":{"items":['
        + (b"," + blank).join(items)
        + b"]}}"
    )


def serving(pages: list[list[bytes]]) -> AbstractContextManager[str]:
    """A loopback API answering page n with the items of `pages[n]`, then an empty page."""
    rng = random.Random(len(pages))
    bodies = [body(items, rng.choice(BLANKS)) for items in [*pages, []]]

    return answering_json(lambda asked: bodies[min(asked["page"], len(bodies) - 1)])


# The independent reading: Python's json module, with every number kept as its text.

LONE_SURROGATE = re.compile("[\ud800-\udfff]")


def parsed(raw: bytes) -> object:
    """Objects as lists of pairs (a key sent twice stays twice), numbers as (kind, text),
    lone surrogates as U+FFFD, which NOVA_API_LONE_SURROGATES=replace lands in their
    place."""

    def text(value: object) -> object:
        return LONE_SURROGATE.sub("\ufffd", value) if isinstance(value, str) else value

    return json.loads(
        raw,
        object_pairs_hook=lambda pairs: ("object", [(text(k), text(v)) for k, v in pairs]),
        parse_int=lambda s: ("integer", s),
        parse_float=lambda s: ("float", s),
        parse_constant=lambda s: ("constant", s),
    )


def significant_digits(number: str) -> int:
    return len(number.lower().split("e")[0].replace("-", "").replace(".", "").lstrip("0"))


def micro_euro(number: str) -> Decimal:
    return Decimal(number).quantize(Decimal("0.000001"), ROUND_HALF_UP)


def costs(number: str) -> set[Decimal] | None:
    """What a cost may be stored as, or None when it breaks the contract. Its sign and
    range are judged on the number as a double, so a negative number too small for one
    is zero; its value is the text rounded to the micro-euro, or, past 15 significant
    digits, the double's (docs/design.md, "Money")."""
    as_double = float(number)
    if as_double < 0 or as_double >= 1e12 or Decimal(number) >= Decimal("1e12"):
        return None
    exact = micro_euro(number)
    if exact >= Decimal("1e12"):
        return None
    return {exact, micro_euro(repr(as_double))} if significant_digits(number) > 15 else {exact}


def contract_reading(raw: bytes) -> dict | None:
    """The event an item is, as the contract reads it (costs: the values it may be stored
    as), or None when the item breaks any rule."""
    value = parsed(raw)
    if not (isinstance(value, tuple) and value[0] == "object"):
        return None
    pairs = value[1]
    fields = dict(pairs)
    if len(fields) < len(pairs) or any(fields.get(key) is None for key in REQUIRED):
        return None

    def integer(key: str, bounds: tuple[int, int]) -> int | None:
        value = fields[key]
        if isinstance(value, tuple) and value[0] == "integer":
            number = int(value[1])
            return number if bounds[0] <= number <= bounds[1] else None
        return None

    sid, date, sim = integer("sid", INT64), integer("date", YEARS_1_TO_9999), integer("id", INT64)
    cost = fields["session_cost"]
    allowed = (
        costs(cost[1]) if isinstance(cost, tuple) and cost[0] in ("integer", "float") else None
    )
    strings = [fields[key] for key in ("to_number", "original_number", "iccid")]
    name = fields.get("name")
    if (
        None in (sid, date, sim, allowed)
        or fields["type"] not in TYPES
        or not all(isinstance(s, str) for s in strings)
        or not isinstance(name, str | None)
    ):
        return None
    occurred_at = dt.datetime.fromtimestamp(date, dt.UTC)
    return {
        "sid": sid,
        "occurred_at": occurred_at,
        "type": fields["type"],
        "to_number": strings[0],
        "costs": allowed,
        "sim_id": sim,
        "sim_number": strings[1],
        "iccid": strings[2],
        "sim_name": name,
        "out_of_window": not DAY_START <= date < DAY_END,
    }


@pytest.mark.parametrize(("seed", "keys_twice"), [(1, False), (2, False), (3, True)])
def test_every_item_is_stored_as_the_contract_reads_it_or_quarantined(tmp_path, seed, keys_twice):
    pages = random_pages(seed, 1000, keys_twice)
    with serving(pages) as api_url:
        pipeline = Pipeline(
            SimpleNamespace(api_url=api_url), tmp_path, "1=Any", api_lone_surrogates="replace"
        )
        # Without the checks: the share of rejects is far above what blocks the rollups.
        result = pipeline.run(
            DAY.isoformat(),
            selection=dg.AssetSelection.assets(
                "call_sms_raw_pages", "call_sms_events", "call_sms_rejects", "sim_group_membership"
            ).without_checks(),
        )
    landed = "SELECT page, conforms FROM call_sms_raw_pages WHERE item_count > 0 AND selector = ?"
    conforming_pages = dict(pipeline.sql(landed, "all"))
    assert sorted(conforming_pages) == list(range(len(pages))), "every page landed"
    assert pipeline.sql(landed, "g_1") == sorted(conforming_pages.items()), "served alike"
    assert 0 < sum(conforming_pages.values()) < len(pages), "pages of both kinds"
    all_by_the_rules = any("judged rule by rule" in m for m in run_logs(pipeline, result))
    assert all_by_the_rules == keys_twice, "the fast path read the conforming pages, unless…"

    expected: dict[int, list[tuple[int, dict]]] = {}
    expected_rejects: Counter[tuple[str, int]] = Counter()
    for page, items in enumerate(pages):
        for raw in items:
            event = contract_reading(raw)
            if event is None:
                expected_rejects["all", page] += 1
                # A key sent twice on a group's page the client found conforming is left
                # out of its membership, not quarantined (docs/reliability.md).
                expected_rejects["g_1", page] += not conforming_pages[page]
            else:
                expected.setdefault(event["sid"], []).append((page, event))

    rejects = pipeline.sql("SELECT selector, page, reason FROM call_sms_rejects")
    assert all(reason for *_, reason in rejects), "each reject says which rules it broke"
    assert Counter((selector, page) for selector, page, _ in rejects) == +expected_rejects
    members = pipeline.sql("SELECT sim_id FROM sim_group_membership WHERE group_id = 1")
    assert sorted(sim for (sim,) in members) == sorted(
        {event["sim_id"] for copies in expected.values() for _, event in copies}
    )

    events = pipeline.sql(
        "SELECT sid, source_page, occurred_at, type, to_number, cost_eur, sim_id, sim_number, "
        "iccid, sim_name, out_of_window FROM call_sms_events"
    )
    assert sorted(sid for sid, *_ in events) == sorted(expected), "a sid sent twice is kept once"
    for sid, page, occurred_at, type_, to, cost, sim, number, iccid, name, outside in events:
        kept = min((event["out_of_window"], sent_on) for sent_on, event in expected[sid])
        assert (outside, page) == kept, f"sid {sid}: the copy in the day's window, else the first"
        stored = {
            "occurred_at": occurred_at,
            "type": type_,
            "to_number": to,
            "sim_id": sim,
            "sim_number": number,
            "iccid": iccid,
            "sim_name": name,
            "out_of_window": outside,
        }
        assert any(
            sent_on == page
            and cost in event["costs"]
            and all(event[key] == value for key, value in stored.items())
            for sent_on, event in expected[sid]
        ), f"sid {sid} stored as {stored}, {cost} €, from page {page}; sent: {expected[sid]}"
