"""The two ways an item is read agree: what the client's strict check (`api.models.Item`)
lets through the fast path, the rule-by-rule SQL accepts too, with the very same values
(and the group pulls' two-field read of it the same sid and SIM)."""

from __future__ import annotations

import duckdb
import msgspec
import pytest

from nova_pipeline.api.models import Item
from nova_pipeline.simulator.faults import BAD_ITEM_KINDS, bad_item
from nova_pipeline.transforms.events import (
    CONFORMING_SQL,
    CONTRACT_FIELDS,
    GROUP_COLUMNS,
    GROUP_CONFORMING_SQL,
    STAGE_SQL,
    VALID_COLUMNS,
)

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
    "seven decimals": item(session_cost=b"0.1234565"),
    "largest cost": item(session_cost=b"999999999999.999999"),
    "cost too large": item(session_cost=b"1e12"),
    "cost as text": item(session_cost=b'"0.5"'),
    "null name": item(name=b"null"),
    "no name": item(name=None),
    "numeric name": item(name=b"5"),
    "null number": item(to_number=b"null"),
    "float sid": item(sid=b"1.0"),
    "sid beyond int64": item(sid=b"18446744073709551615"),
    "negative sid": item(sid=b"-4"),
    "extra field": item(roaming=b"false"),
    **{kind: bad_item(kind, 1, 1794942000) for kind in BAD_ITEM_KINDS},
}


def conforms(item: bytes) -> bool:
    try:
        msgspec.json.decode(item, type=Item)
    except msgspec.ValidationError:
        return False
    return True


def landed(tmp_path, name: str, item: bytes) -> str:
    path = tmp_path / f"{name.replace(' ', '_')}.ndjson"
    path.write_bytes(
        b'{"day":"2026-11-18","selector":"all","page":0,"body":{"code":200,"message":"OK",'
        b'"result":{"items":[' + item + b"]}}}\n"
    )
    return str(path)


@pytest.mark.parametrize("name", [name for name, raw in ITEMS.items() if conforms(raw)])
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


def test_the_strict_check_sends_every_faulty_kind_to_the_rules():
    expected_to_conform = {
        "good",
        "integer cost",
        "zero cost",
        "negative zero cost",
        "seven decimals",
        "null name",
        "no name",
        "negative sid",
    }
    assert {name for name, raw in ITEMS.items() if conforms(raw)} == expected_to_conform


def test_both_paths_read_the_same_contract_fields():
    """The contract is written twice, as msgspec types (`Item`, the client's check) and as
    DuckDB types (`CONFORMING_ITEM`, the fast read): a field added to one only would be
    dropped silently on the fast path, or make every page nonconforming."""
    assert Item.__struct_fields__ == CONTRACT_FIELDS
