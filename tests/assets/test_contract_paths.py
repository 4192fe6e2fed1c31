"""The two ways an item is read agree: what the client's strict check (`api.models.Item`)
lets through the fast path, the rule-by-rule SQL accepts too, with the very same values
(and the group pulls' two-field read of it the same sid and SIM). The one exception, a
key sent twice, is refused by the fast path's typed read, and the run then judges its
pages rule by rule (`run_staged`)."""

from __future__ import annotations

import json
from decimal import Decimal

import duckdb
import msgspec
import pytest

from nova_pipeline.api.models import Item
from nova_pipeline.simulator.faults import BAD_ITEM_KINDS, bad_item
from nova_pipeline.transforms.events import (
    CONFORMING_SQL,
    CONTRACT_FIELDS,
    DUPLICATE_KEY,
    GROUP_COLUMNS,
    GROUP_CONFORMING_SQL,
    INSERT_REJECTS_SQL,
    STAGE_SQL,
    VALID_COLUMNS,
    run_staged,
    stage_items,
)
from nova_pipeline.warehouse import ensure_schema
from tests.conftest import bad_item_reason

DAY_START = 1794942000

FIELDS = {
    "sid": b"1",
    "date": b"1794942000",
    "type": b'"call"',
    "to_number": b'"+77070000000"',
    "session_cost": b"0.077939",
    "id": b"7",
    "original_number": b'"+77010000000"',
    "iccid": b'"8970199000000000000"',
    "name": b'"Gate-7"',
}


def item(**changes: bytes | None) -> bytes:
    """A valid item with some fields changed, added, or removed (None)."""
    fields = {**FIELDS, **changes}
    return b"{" + b",".join(b'"%s":%s' % (k.encode(), v) for k, v in fields.items() if v) + b"}"


ITEMS = {
    "good": item(),
    "integer cost": item(session_cost=b"3"),
    "zero cost": item(session_cost=b"0.0"),
    "negative zero cost": item(session_cost=b"-0.0"),
    "negative cost that rounds to zero": item(session_cost=b"-0.0000004"),
    "seven decimals": item(session_cost=b"0.1234565"),
    "15 significant digits": item(session_cost=b"999999999.999999"),
    "largest cost": item(session_cost=b"999999999999.999999"),
    "cost too large": item(session_cost=b"1e12"),
    "cost as text": item(session_cost=b'"0.5"'),
    "null name": item(name=b"null"),
    "no name": item(name=None),
    "numeric name": item(name=b"5"),
    "negative numeric name": item(name=b"-5"),
    "null number": item(to_number=b"null"),
    "no number": item(to_number=None),
    "numeric number": item(original_number=b"77010000000"),
    "numeric iccid": item(iccid=b"8970199000000000000"),
    "float sid": item(sid=b"1.0"),
    "sid beyond int64": item(sid=b"18446744073709551615"),
    "negative sid": item(sid=b"-4"),
    "id beyond int64": item(id=b"9223372036854775808"),
    "date in milliseconds": item(date=b"1794942000000"),
    "date beyond any time": item(date=b"9223372036854775807"),
    "last second of 9999": item(date=b"253402300799"),
    "extra field": item(roaming=b"false"),
    "sid sent twice": item(sid=b'1,"sid":2'),
    "a number for an item": b"7",
    "null for an item": b"null",
    "a list for an item": b"[]",
    **{kind: bad_item(kind, 1, DAY_START) for kind in BAD_ITEM_KINDS},
}


def conforms(item: bytes) -> bool:
    try:
        msgspec.json.decode(item, type=Item)
    except (msgspec.DecodeError, msgspec.ValidationError):
        return False
    return True


def landed(tmp_path, name: str, item: bytes) -> str:
    path = tmp_path / f"{name.replace(' ', '_')}.ndjson"
    path.write_bytes(
        b'{"day":"2026-11-18","selector":"all","page":0,"body":{"code":200,"message":"OK",'
        b'"result":{"items":[' + item + b"]}}}\n"
    )
    return str(path)


SENT_TWICE = {"duplicate_key": "session_cost", "sid sent twice": "sid"}
"""Items with a key sent twice, which msgspec takes (keeping the last value), and the key."""


@pytest.mark.parametrize(
    "name", [name for name, raw in ITEMS.items() if conforms(raw) and name not in SENT_TWICE]
)
def test_fast_path_takes_only_what_the_rules_accept_with_the_same_values(tmp_path, name):
    path = landed(tmp_path, name, ITEMS[name])
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    con.execute(STAGE_SQL, {"files": [path]})
    reason, *judged = con.execute(f"SELECT reason, {VALID_COLUMNS} FROM staged_items").fetchone()
    assert reason is None, f"{name}: the client let through what the rules reject: {reason}"
    fast = con.execute(CONFORMING_SQL % f"['{path}']").fetchall()
    assert fast == [tuple(judged)]
    as_group = con.execute(GROUP_CONFORMING_SQL % f"['{path}']").fetchall()
    judged_by_column = dict(zip(VALID_COLUMNS.split(", "), judged, strict=True))
    assert as_group == [tuple(judged_by_column[c] for c in GROUP_COLUMNS.split(", "))]


def test_the_strict_check_sends_every_faulty_kind_but_a_key_sent_twice_to_the_rules():
    expected_to_conform = {
        *SENT_TWICE,
        "good",
        "integer cost",
        "zero cost",
        "negative zero cost",
        "seven decimals",
        "15 significant digits",
        "null name",
        "no name",
        "negative sid",
        "last second of 9999",
    }
    assert {name for name, raw in ITEMS.items() if conforms(raw)} == expected_to_conform


@pytest.mark.parametrize("name", list(SENT_TWICE))
def test_a_key_sent_twice_is_refused_by_the_typed_read_and_rejected_by_the_rules(tmp_path, name):
    """The fast path's reads fail on it, in the words `run_staged` looks for (a DuckDB
    upgrade that rewords them would fail here, not in a user's run); the rules reject it."""
    path = landed(tmp_path, name, ITEMS[name])
    con = duckdb.connect()
    for sql in (CONFORMING_SQL, GROUP_CONFORMING_SQL):
        with pytest.raises(duckdb.InvalidInputException, match=DUPLICATE_KEY):
            con.execute(sql % f"['{path}']").fetchall()
    con.execute(STAGE_SQL, {"files": [path]})
    [(reason,)] = con.execute("SELECT reason FROM staged_items").fetchall()
    assert reason == f"{SENT_TWICE[name]}: sent more than once"


def test_a_key_sent_twice_on_a_conforming_page_sends_the_run_to_the_rules(tmp_path):
    """`run_staged` reads the other items of that page and quarantines the ambiguous one,
    where the typed read alone would fail the day on every pull."""
    good = [item(sid=b"%d" % sid) for sid in (11, 12, 13)]
    conforming = landed(tmp_path, "conforming", b",".join([*good, ITEMS["duplicate_key"]]))
    con = duckdb.connect()
    warnings: list[str] = []
    valid = run_staged(
        con,
        stage_items,
        [conforming],
        [],
        lambda: con.execute("SELECT sid, cost_eur FROM valid_items ORDER BY sid").fetchall(),
        warnings.append,
    )
    assert valid == [(sid, Decimal("0.077939")) for sid in (11, 12, 13)]
    assert con.execute("SELECT reason FROM staged_items WHERE reason IS NOT NULL").fetchall() == [
        ("session_cost: sent more than once",)
    ]
    [warning] = warnings
    assert 'duplicate key "session_cost"' in warning
    assert "conforming.ndjson" in warning, "the warning names the file"


def test_the_rules_quarantine_what_cannot_be_stored_and_say_why(tmp_path):
    """What the strict check sends to the rules: kept (with its value) or quarantined with
    the reason. An integer beyond 64 bits was once kept with a NULL sid, and a time beyond
    any calendar failed the whole day's insert."""
    verdicts = {
        "largest cost": "session_cost: not representable as DECIMAL(18, 6)",
        "cost too large": "session_cost: not representable as DECIMAL(18, 6)",
        "negative cost that rounds to zero": "session_cost: negative (-4e-7)",
        "a number for an item": "item: expected an object, got ubigint",
        "null for an item": "item: expected an object, got null",
        "a list for an item": "item: expected an object, got array",
        "cost as text": "session_cost: expected a number, got varchar",
        "numeric name": "name: expected a string or null, got ubigint",
        "negative numeric name": "name: expected a string or null, got bigint",
        "null number": "to_number: expected a string, got null",
        "no number": "to_number: missing",
        "numeric number": "original_number: expected a string, got ubigint",
        "numeric iccid": "iccid: expected a string, got ubigint",
        "float sid": "sid: expected an integer, got double",
        "sid beyond int64": "sid: 18446744073709551615 is beyond a 64-bit integer",
        "id beyond int64": "id: 9223372036854775808 is beyond a 64-bit integer",
        "date in milliseconds": "date: 1794942000000 is not a time in the years 1-9999",
        "date beyond any time": "date: 9223372036854775807 is not a time in the years 1-9999",
        "extra field": None,
        **{
            kind: bad_item_reason(kind, json.loads(ITEMS[kind]))
            for kind in BAD_ITEM_KINDS
            if kind not in SENT_TWICE
        },
    }
    assert set(verdicts) == {name for name, raw in ITEMS.items() if not conforms(raw)}
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    judged = {}
    for name in verdicts:
        con.execute(STAGE_SQL, {"files": [landed(tmp_path, name, ITEMS[name])]})
        [judged[name]] = con.execute("SELECT reason, sid, sim_id FROM staged_items").fetchall()
    assert {name: reason for name, (reason, *_) in judged.items()} == verdicts
    assert all(
        sid is not None and sim is not None for reason, sid, sim in judged.values() if not reason
    )


def test_every_item_the_rules_reject_is_stored_in_the_quarantine_as_sent(tmp_path):
    """All of them in one page, into the real table: a `null` in the items list once broke
    its NOT NULL `item` and failed the day's write on every pull."""
    rejected = [raw for name, raw in ITEMS.items() if not conforms(raw) and name != "extra field"]
    path = landed(tmp_path, "all rejected", b",".join(rejected))
    con = duckdb.connect()
    ensure_schema(con)
    con.execute(STAGE_SQL, {"files": [path]})
    con.execute(INSERT_REJECTS_SQL)
    stored = con.execute("SELECT item FROM call_sms_rejects").fetchall()
    assert sorted(json.dumps(json.loads(item)) for (item,) in stored) == sorted(
        json.dumps(json.loads(raw)) for raw in rejected
    )


def test_both_paths_read_the_same_contract_fields():
    """The contract is written twice, as msgspec types (`Item`, the client's check) and as
    DuckDB types (`CONFORMING_ITEM`, the fast read): a field added to one only would be
    dropped silently on the fast path, or make every page nonconforming."""
    assert Item.__struct_fields__ == CONTRACT_FIELDS


@pytest.mark.parametrize(
    ("sent", "stored"), [(b"0.1234565", "0.123457"), (b"0.1234564", "0.123456")]
)
def test_a_cost_with_more_than_six_decimals_is_rounded_half_away_from_zero_on_both_paths(
    tmp_path, sent, stored
):
    """The precision docs/api.md states: the micro-euro, half a micro-euro rounded up, alike
    on the fast path and the rule-by-rule one."""
    path = landed(tmp_path, "long cost", item(session_cost=sent))
    con = duckdb.connect()
    con.execute("SET TimeZone = 'UTC'")
    fast_path = CONFORMING_SQL % f"['{path}']"
    [(fast,)] = con.execute(f"SELECT cost_eur FROM ({fast_path})").fetchall()
    con.execute(STAGE_SQL, {"files": [path]})
    [(judged,)] = con.execute("SELECT cost_eur FROM staged_items").fetchall()
    assert fast == judged == Decimal(stored)
