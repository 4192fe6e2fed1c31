"""The landing zone's files, where the pages of every pull are kept verbatim."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

from nova_pipeline.api import ClientConfig, Endpoint, NovaClient
from nova_pipeline.landing import Landing, page_line
from tests.conftest import DAY, landed_lines


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


def test_the_index_names_absolute_files_though_the_data_folder_is_relative(
    start_simulator, tmp_path, monkeypatch
):
    """NOVA_DATA_DIR defaults to `data`, relative to where the step runs; the raw table keeps
    file names a later run or an analyst can open from anywhere."""
    sim = start_simulator(faults={"bad_items": 0.5})
    monkeypatch.chdir(tmp_path)
    landing = Landing(Path("data") / "landing")
    with client(sim) as api:
        records = landing.write_pages(
            DAY, landing.new_fetch_dir(DAY), "all", api.pages(DAY, DAY, "all")
        )
    assert {r.conforms for r in records} == {True, False}
    monkeypatch.chdir("/")
    for record in records:
        assert Path(record.landing_file).is_absolute()
        assert Path(record.landing_file).is_relative_to((tmp_path / "data" / "landing").resolve())
        assert json.loads(landed_lines(record.landing_file)[record.line])["page"] == record.page


def test_two_fetches_of_a_day_in_the_same_second_get_folders_of_their_own(tmp_path):
    landing = Landing(tmp_path)
    folders = [landing.new_fetch_dir(DAY) for _ in range(3)]
    assert len(set(folders)) == 3 and all(f.parent == landing.day_dir(DAY) for f in folders)
    assert landing.day_dir(DAY) == tmp_path / "call_sms" / f"day={DAY.isoformat()}"
