"""The landing zone's files, where the pages of every pull are kept verbatim."""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
from pathlib import Path

import pytest

from nova_pipeline.api import ClientConfig, Endpoint, NovaClient
from nova_pipeline.landing import Landing, LandingFilesMissing, page_line
from tests.conftest import DAY, file_size_limit, landed_lines


def client(sim) -> NovaClient:
    return NovaClient(Endpoint(sim.api_url), ClientConfig(page_size=50))


def test_a_body_laid_out_over_lines_lands_on_one_line_with_its_values(start_simulator):
    """A line break inside a body would split its page in two for DuckDB's NDJSON reader;
    CR alone counts as one for some readers, so both go."""
    sim = start_simulator(faults={"pretty_json": 1.0})
    with client(sim) as api:
        page = next(api.pages(DAY, DAY, "all"))
    for body in (page.body, page.body.replace(b"\r\n", b"\r"), page.body.replace(b"\r\n", b"\n")):
        line = b"".join(page_line(DAY, dataclasses.replace(page, body=body)))
        assert line.endswith(b"}\n") and line.count(b"\n") == 1 and b"\r" not in line
        assert json.loads(line)["body"] == json.loads(page.body)


def test_the_index_names_files_within_the_landing_zone_so_it_can_move(
    start_simulator, tmp_path, monkeypatch
):
    """NOVA_DATA_DIR defaults to `data`, relative to where the step runs; the raw table names
    each file within the landing zone, so the same name is found from any folder, and after
    the folder moved, by a landing zone at its new place."""
    sim = start_simulator(faults={"bad_items": 0.5})
    monkeypatch.chdir(tmp_path)
    landing = Landing(Path("data") / "landing")
    with client(sim) as api:
        records = landing.write_pages(
            DAY, landing.new_fetch_dir(DAY), "all", api.pages(DAY, DAY, "all")
        )
    assert {r.conforms for r in records} == {True, False}
    fetch = f"call_sms/day={DAY.isoformat()}/fetch="
    assert all(r.landing_file.startswith(fetch) for r in records)
    monkeypatch.chdir("/")
    (tmp_path / "data").rename(tmp_path / "moved")
    moved = Landing(tmp_path / "moved" / "landing")
    for record in records:
        path = moved.path(record.landing_file)
        assert json.loads(landed_lines(path)[record.line])["page"] == record.page
    names = [(DAY, r.landing_file) for r in records]
    assert moved.existing(names) == sorted({moved.path(r.landing_file) for r in records})
    stored_absolute = [(DAY, str(moved.path(r.landing_file))) for r in records]
    assert Landing(tmp_path / "elsewhere").existing(stored_absolute) == moved.existing(names)


def test_indexed_files_not_in_the_landing_zone_are_named_with_their_days_and_a_remedy(tmp_path):
    landing = Landing(tmp_path / "landing")
    days = [DAY - dt.timedelta(days=n) for n in range(7)]
    with pytest.raises(LandingFilesMissing) as error:
        landing.existing((day, f"call_sms/day={day}/fetch=x/all.ndjson.zst") for day in days)
    first = landing.path(f"call_sms/day={days[-1]}/fetch=x/all.ndjson.zst")
    assert str(error.value) == (
        f"call_sms_raw_pages indexes landing files that are not in {tmp_path / 'landing'}: "
        f"7 file(s) of {', '.join(str(d) for d in sorted(days)[:5])} and 2 more days (the first: "
        f"{first}). If the folder moved, point NOVA_DATA_DIR at it; otherwise materialize "
        "call_sms_raw_pages for those days to pull them again."
    )


def test_two_fetches_of_a_day_in_the_same_second_get_folders_of_their_own(tmp_path):
    landing = Landing(tmp_path)
    folders = [landing.new_fetch_dir(DAY) for _ in range(3)]
    assert len(set(folders)) == 3 and all(f.parent == landing.day_dir(DAY) for f in folders)
    assert landing.day_dir(DAY) == tmp_path / "call_sms" / f"day={DAY.isoformat()}"


def test_a_page_the_disk_cannot_hold_names_the_folder_it_was_written_in(start_simulator, tmp_path):
    """A write to a full disk raises an OSError that names no file: the step said only "No
    space left on device" (seen on a full tmpfs), not which disk."""
    landing = Landing(tmp_path / "landing")
    fetch_dir = landing.new_fetch_dir(DAY)
    with (
        client(start_simulator()) as api,
        file_size_limit(4096),
        pytest.raises(OSError) as failed,
    ):
        landing.write_pages(DAY, fetch_dir, "all", api.pages(DAY, DAY, "all"))
    assert failed.value.filename == str(fetch_dir)
    assert str(failed.value) == f"[Errno 27] File too large: '{fetch_dir}'"
