"""A day is replaced whole: re-runs change nothing, failures keep the old rows."""

from __future__ import annotations

import datetime as dt
import glob
import shutil
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from nova_pipeline.resources import build_resources
from nova_pipeline.settings import load_settings
from nova_pipeline.simulator import FleetSpec
from nova_pipeline.warehouse import GRAIN, TABLES, ensure_schema, replace_days
from nova_pipeline.warehouse.schema import ddl
from tests.conftest import DAY, day_metadata, file_size_limit, run_logs

DAY_KEY = DAY.isoformat()
SNAPSHOT = {
    "call_sms_events": "SELECT * FROM call_sms_events ORDER BY sid",
    "sim_daily_cost": "SELECT * FROM sim_daily_cost ORDER BY day, sim_id",
    "group_daily_cost": "SELECT * FROM group_daily_cost ORDER BY day, group_id",
    "sim_group_membership": "SELECT * FROM sim_group_membership ORDER BY ALL",
    "call_sms_rejects": "SELECT * FROM call_sms_rejects ORDER BY ALL",
}


def snapshot(pipeline) -> dict[str, list]:
    return {name: pipeline.sql(sql) for name, sql in SNAPSHOT.items()}


def test_rerun_of_a_day_replaces_it(make_pipeline):
    pipeline = make_pipeline()
    pipeline.run(DAY_KEY)
    before = snapshot(pipeline)
    pipeline.run(DAY_KEY)
    assert snapshot(pipeline) == before
    assert pipeline.sql("SELECT count(*) - count(DISTINCT sid) FROM call_sms_events") == [(0,)]
    assert len(before["call_sms_events"]) > 300
    fetches = glob.glob(str(pipeline.root / "landing/call_sms/day=*/fetch=*"))
    assert len(fetches) == 1, "the older fetch of the day is pruned once the new one is committed"


def test_a_range_run_gives_the_same_tables_as_days_run_one_by_one(make_pipeline, start_simulator):
    sim = start_simulator()
    ranged = make_pipeline(sim=sim)
    ranged.run("2026-11-15", "2026-11-18")
    daily = make_pipeline(sim=sim)
    for day in ("2026-11-15", "2026-11-16", "2026-11-17", "2026-11-18"):
        daily.run(day)
    assert snapshot(ranged) == snapshot(daily)
    assert len({r[2] for r in snapshot(ranged)["call_sms_events"]}) == 4
    ranged.run("2026-11-15", "2026-11-18")
    assert snapshot(ranged) == snapshot(daily), "a range re-run replaces every one of its days"


def test_a_failure_between_delete_and_insert_keeps_the_previous_rows(make_pipeline):
    pipeline = make_pipeline()
    pipeline.run(DAY_KEY)
    before = snapshot(pipeline)
    for path in glob.glob(str(pipeline.root / "landing/call_sms/day=*/fetch=*/all.ndjson.zst")):
        Path(path).write_bytes(b"not zstd")
    result = pipeline.run(
        DAY_KEY, selection=["call_sms_events", "call_sms_rejects"], raise_on_error=False
    )
    assert not result.success
    assert snapshot(pipeline) == before


def test_a_moved_data_folder_is_read_where_it_now_is(make_pipeline, tmp_path):
    """NOVA_DATA_DIR moved with its files (to a bigger disk): the stored days' events,
    membership and checks re-run from their landed pages, without pulling them again."""
    pipeline = make_pipeline()
    pipeline.run(DAY_KEY)
    before = snapshot(pipeline)
    moved = tmp_path / "bigger disk"
    pipeline.root.rename(moved)
    pipeline.reconfigure("landing_zone", root=str(moved / "landing"))
    pipeline.reconfigure("duckdb", database=str(moved / "nova.duckdb"))
    pipeline.sql("DELETE FROM call_sms_events")
    pipeline.sql("DELETE FROM sim_group_membership")
    stored = dg.AssetSelection.all() - dg.AssetSelection.assets("call_sms_raw_pages")
    result = pipeline.run(DAY_KEY, selection=stored)
    assert result.success
    evaluations = {e.check_name: e.passed for e in result.get_asset_check_evaluations()}
    assert len(evaluations) == 11 and all(evaluations.values())
    assert "group_sids_in_account_pull" in evaluations, "it reads the group pulls' files"
    assert snapshot(pipeline) == before
    assert before["call_sms_events"] and before["sim_group_membership"]


def test_landed_pages_gone_fail_the_step_saying_what_to_do_and_keep_the_day(make_pipeline):
    pipeline = make_pipeline()
    pipeline.run(DAY_KEY)
    before = snapshot(pipeline)
    shutil.rmtree(pipeline.root / "landing")
    result = pipeline.run(
        DAY_KEY, selection=["call_sms_events", "call_sms_rejects"], raise_on_error=False
    )
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.cause.message
    assert f"not in {pipeline.root / 'landing'}: " in message
    assert f"of {DAY_KEY} (the first: " in message
    assert "materialize call_sms_raw_pages for those days to pull them again" in message
    assert snapshot(pipeline) == before


def test_an_asset_picked_alone_for_days_its_upstream_never_had_fails_and_writes_nothing(
    make_pipeline,
):
    """Built from nothing, a day would be stored empty (no event, no euro), shown as
    materialized, with checks that pass: the fleet would look idle that day."""
    pipeline = make_pipeline()
    pipeline.run(DAY_KEY)
    before = snapshot(pipeline)
    earlier = (DAY - dt.timedelta(days=2)).isoformat()
    between = (DAY - dt.timedelta(days=1)).isoformat()

    def failures(result: dg.ExecuteInProcessResult) -> dict[str, str]:
        assert not result.success
        return {
            e.step_key: e.step_failure_data.error.cause.message
            for e in result.all_events
            if e.is_step_failure
        }

    loaded = failures(
        pipeline.run(
            earlier,
            DAY_KEY,
            selection=["call_sms_events", "call_sms_rejects", "sim_group_membership"],
            raise_on_error=False,
        )
    )
    assert set(loaded) == {"call_sms_events", "sim_group_membership"}
    gap = (
        f"call_sms_raw_pages has never been materialized for {earlier}, {between} (2 of the "
        "run's 3 days). Such a day would be stored empty, as if the fleet "
        "had been idle. Materialize those days with every asset selected, or with the assets "
        "named here too. Nothing was written."
    )
    assert loaded["call_sms_events"] == (
        f"nova_pipeline.assets.common.UpstreamNotMaterialized: call_sms_events, "
        f"call_sms_rejects not built: {gap}\n"
    )
    assert loaded["sim_group_membership"].endswith(f"sim_group_membership not built: {gap}\n")

    pipeline.run(earlier, selection=["call_sms_raw_pages"])
    rolled = failures(
        pipeline.run(earlier, DAY_KEY, selection=["sim_daily_cost"], raise_on_error=False)
    )
    assert rolled["sim_daily_cost"].endswith(
        f"sim_daily_cost not built: call_sms_events has never been materialized for {earlier}, "
        f"{between} (2 of the run's 3 days). Such a day would be "
        "stored empty, as if the fleet had been idle. Materialize those days with every asset "
        "selected, or with the assets named here too. Nothing was written.\n"
    )
    assert snapshot(pipeline) == before
    assert pipeline.sql("SELECT count(*) FROM call_sms_raw_pages WHERE day = ?", earlier)[0][0] > 0

    pipeline.run(earlier, selection=["call_sms_events", "call_sms_rejects", "sim_daily_cost"])
    assert pipeline.sql("SELECT count(*) FROM sim_daily_cost WHERE day = ?", earlier)[0][0] > 0


def test_a_warehouse_that_lacks_the_days_the_instance_recorded_fails_the_step(
    make_pipeline, tmp_path
):
    """The warehouse file deleted or NOVA_DUCKDB_PATH pointed at another one, with the same
    Dagster instance: every day is still recorded as pulled. An asset picked alone would
    build its days from an empty warehouse and store them as idle, checks passing."""
    pipeline = make_pipeline()
    pipeline.run(DAY_KEY)
    before = snapshot(pipeline)
    elsewhere = tmp_path / "elsewhere.duckdb"
    pipeline.reconfigure("duckdb", database=str(elsewhere))
    picked = {
        "call_sms_events": ["call_sms_events", "call_sms_rejects"],
        "sim_group_membership": ["sim_group_membership"],
        "sim_daily_cost": ["sim_daily_cost"],
        "group_daily_cost": ["group_daily_cost"],
    }
    for step, selection in picked.items():
        result = pipeline.run(DAY_KEY, selection=selection, raise_on_error=False)
        assert not result.success, step
        [failure] = [e for e in result.all_events if e.is_step_failure]
        assert failure.step_key == step
        assert failure.step_failure_data.error.cause.message == (
            f"nova_pipeline.assets.common.WarehouseLacksDays: {', '.join(selection)} not "
            f"built: this Dagster instance has call_sms_raw_pages materialized for {DAY_KEY}, "
            f"but the warehouse {elsewhere} holds no page of it: the file was replaced or "
            "deleted, or NOVA_DUCKDB_PATH (NOVA_DATA_DIR) now points at another one. Point it "
            "back, or materialize those days with every asset selected to pull them again. "
            "Nothing was written.\n"
        )
    assert all(rows == [] for rows in snapshot(pipeline).values())

    pipeline.run(DAY_KEY)
    assert snapshot(pipeline) == before, "a run of every asset pulls the day into the new file"


def test_a_pull_warns_of_the_other_days_the_instance_records_that_the_warehouse_lacks(
    make_pipeline, tmp_path
):
    """The UI's partitions, the freshness checks and the schedule's catch-up read the
    instance: after the warehouse moved they would show every day as in, without a word.
    The daily run's pull says which days to backfill."""
    pipeline = make_pipeline()
    pipeline.run("2026-11-14", "2026-11-15", selection=["call_sms_raw_pages"])
    pipeline.run("2026-11-17", selection=["call_sms_raw_pages"])
    elsewhere = tmp_path / "elsewhere.duckdb"
    pipeline.reconfigure("duckdb", database=str(elsewhere))

    def pull(first: str, last: str | None = None) -> tuple[int, list[str]]:
        result = pipeline.run(first, last, selection=["call_sms_raw_pages"])
        [count] = {
            m["days_not_in_warehouse"] for m in day_metadata(result, "call_sms_raw_pages").values()
        }
        return count, [m for m in run_logs(pipeline, result) if "holds no page of" in m]

    assert pull(DAY_KEY) == (
        3,
        [
            "this Dagster instance has call_sms_raw_pages materialized for 3 days besides this "
            f"run's that the warehouse {elsewhere} holds no page of: 2026-11-14..2026-11-15, "
            "2026-11-17. The UI shows them as materialized and the daily schedule's catch-up "
            "of missed days skips them: the file was replaced or deleted, or NOVA_DUCKDB_PATH "
            "(NOVA_DATA_DIR) now points at another one. Point it back, or backfill those days "
            "with every asset selected."
        ],
    )
    count, [warning] = pull("2026-11-14", "2026-11-15")
    assert count == 1 and "for 1 day besides this run's" in warning and ": 2026-11-17. " in warning
    assert pull("2026-11-17") == (0, [])
    days = pipeline.sql("SELECT DISTINCT day FROM call_sms_raw_pages ORDER BY day")
    assert days == [(dt.date(2026, 11, d),) for d in (14, 15, 17, 18)]


def test_replace_days_rolls_back_every_table_on_error(tmp_path):
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    ensure_schema(con)
    con.execute("INSERT INTO call_sms_rejects VALUES (?, 'all', 0, 'old', '{}')", [DAY])
    con.execute("INSERT INTO sim_group_membership VALUES (?, 1, 'A', 7)", [DAY])

    def boom(c):
        raise RuntimeError("insert failed")

    with pytest.raises(RuntimeError):
        replace_days(
            con,
            DAY,
            DAY,
            {
                "sim_group_membership": lambda c: None,
                "call_sms_rejects": boom,
            },
        )
    assert con.execute("SELECT count(*) FROM sim_group_membership").fetchone() == (1,)
    assert con.execute("SELECT reason FROM call_sms_rejects").fetchall() == [("old",)]
    replace_days(con, DAY, DAY + dt.timedelta(1), {"sim_group_membership": lambda c: None})
    assert con.execute("SELECT count(*) FROM sim_group_membership").fetchone() == (0,)
    with pytest.raises(ValueError, match="unknown table call_sms_rejects; DROP"):
        replace_days(con, DAY, DAY, {"call_sms_rejects; DROP": lambda c: None})
    assert con.execute("SELECT reason FROM call_sms_rejects").fetchall() == [("old",)]


@pytest.mark.parametrize("rows", [100_000, 3_000_000], ids=["at-commit", "in-insert"])
def test_a_write_the_disk_cannot_hold_says_why_and_keeps_the_previous_rows(tmp_path, rows):
    """A small write goes to the WAL at COMMIT, a big one to the file as it inserts; when
    the disk is full either fails. A failed COMMIT has already ended the transaction: the
    ROLLBACK after it failed too, and the step said "cannot rollback - no transaction is
    active" instead of which file could not be written (seen on a full tmpfs)."""
    path = tmp_path / "w.duckdb"
    con = duckdb.connect(str(path))
    ensure_schema(con)
    con.execute("INSERT INTO sim_group_membership VALUES (?, 1, 'A', 7)", [DAY])
    con.execute("CHECKPOINT")

    def insert(c):
        c.execute(
            "INSERT INTO sim_group_membership SELECT ?, 1, 'A', range FROM range(?)", [DAY, rows]
        )

    with file_size_limit(100_000), pytest.raises(duckdb.Error) as failed:
        replace_days(con, DAY, DAY, {"sim_group_membership": insert})
    assert "File too large" in str(failed.value) and str(path) in str(failed.value)
    assert "no transaction is active" not in str(failed.value)
    assert con.execute("SELECT day, sim_id FROM sim_group_membership").fetchall() == [(DAY, 7)]
    con.close()
    with duckdb.connect(str(path)) as again:
        assert again.execute("SELECT sim_id FROM sim_group_membership").fetchall() == [(7,)]


def test_a_failed_pull_writes_nothing_and_keeps_the_previous_day(make_pipeline):
    pipeline = make_pipeline()
    pipeline.run(DAY_KEY)
    before = snapshot(pipeline)
    pages_before = pipeline.sql("SELECT * FROM call_sms_raw_pages ORDER BY ALL")
    pipeline.sim.simulator.faults.rates["server_error"] = 1.0
    pipeline.reconfigure("nova_api", max_attempts=2)
    result = pipeline.run(DAY_KEY, raise_on_error=False)
    assert not result.success
    assert pipeline.sql("SELECT * FROM call_sms_raw_pages ORDER BY ALL") == pages_before
    assert snapshot(pipeline) == before
    assert len(glob.glob(str(pipeline.root / "landing/call_sms/day=*/fetch=*"))) == 1


def test_a_failed_first_pull_of_a_day_leaves_no_folder_for_it(make_pipeline):
    """The landing zone lists the days with pages: none for a day whose only pull failed."""
    pipeline = make_pipeline(faults={"server_error": 1.0}, max_attempts=2)
    assert not pipeline.run(DAY_KEY, raise_on_error=False).success
    assert (pipeline.root / "landing" / "call_sms").is_dir()
    assert list((pipeline.root / "landing" / "call_sms").iterdir()) == []


def test_pages_indexed_by_an_earlier_version_are_read_rule_by_rule(make_pipeline):
    """A warehouse from before `conforms` was recorded gets the column as null: those pages,
    bad items among them, are judged item by item, so a re-run keeps the same events and
    quarantines the same items (read as conforming, the first bad item fails the run)."""
    pipeline = make_pipeline(faults={"bad_items": 0.5})
    pipeline.run(DAY_KEY)
    before = snapshot(pipeline)
    with duckdb.connect(pipeline.resources["duckdb"].database) as con:
        con.execute("ALTER TABLE call_sms_raw_pages DROP COLUMN conforms")
    pipeline.run(DAY_KEY, selection=["call_sms_events", "call_sms_rejects"])
    assert pipeline.sql("SELECT count(*) FROM call_sms_raw_pages WHERE conforms IS NULL") == [
        pipeline.sql("SELECT count(*) FROM call_sms_raw_pages")[0]
    ]
    after = snapshot(pipeline)
    for table in ("call_sms_events", "call_sms_rejects"):
        assert after[table] == before[table], table
        assert before[table], table


def test_a_table_made_by_an_earlier_version_gets_every_column_it_lacks(tmp_path):
    """A column added to a table since a warehouse was made, null or not in the DDL, is
    added (nullable: its old rows have no value) and the rows already there are kept."""
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    ensure_schema(con)
    con.execute("INSERT INTO sim_group_membership VALUES (?, 1, 'A', 7)", [DAY])
    for table in TABLES:
        con.execute(f"ALTER TABLE {table} DROP COLUMN {TABLES[table][-1].name}")
    ensure_schema(con)
    for table, columns in TABLES.items():
        present = con.execute(
            "SELECT column_name FROM duckdb_columns() WHERE table_name = ? ORDER BY column_index",
            [table],
        ).fetchall()
        assert [name for (name,) in present] == [c.name for c in columns], table
    assert con.execute("SELECT day, group_id, sim_id FROM sim_group_membership").fetchall() == [
        (DAY, 1, None)
    ]
    assert not TABLES["sim_group_membership"][-1].nullable, "a NOT NULL column was added"


def test_group_ids_stored_as_integer_by_an_earlier_version_are_widened_keeping_the_rows(
    tmp_path,
):
    """Group ids were INTEGER, as SIM ids never were: a provider's group id past 2^31
    failed the membership step. A warehouse made then gets BIGINT, its rows, its comments
    and its NOT NULL kept, and takes such an id."""
    con = duckdb.connect(str(tmp_path / "w.duckdb"))
    groups = ("group_daily_cost", "sim_group_membership")
    described = {t: next(c.description for c in TABLES[t] if c.name == "group_id") for t in groups}
    for table in groups:
        con.execute(ddl(table).replace("group_id BIGINT", "group_id INTEGER"))
        con.execute(f"COMMENT ON COLUMN {table}.group_id IS '{described[table]}'")
    con.execute("INSERT INTO sim_group_membership VALUES (?, 2147483647, 'A', 7)", [DAY])
    types = (
        "SELECT table_name, data_type, is_nullable, comment FROM duckdb_columns() "
        "WHERE column_name = 'group_id' ORDER BY ALL"
    )
    assert {t for _, t, _, _ in con.execute(types).fetchall()} == {"INTEGER"}
    ensure_schema(con)
    assert con.execute(types).fetchall() == [
        ("group_daily_cost", "BIGINT", True, described["group_daily_cost"]),
        ("sim_group_membership", "BIGINT", False, described["sim_group_membership"]),
    ]
    con.execute("INSERT INTO sim_group_membership VALUES (?, 9223372036854775807, 'B', 8)", [DAY])
    stored = con.execute("SELECT group_id, sim_id FROM sim_group_membership ORDER BY 1")
    assert stored.fetchall() == [(2147483647, 7), (9223372036854775807, 8)]


def test_a_session_on_the_warehouse_reads_what_each_table_and_column_is(make_pipeline):
    pipeline = make_pipeline()
    pipeline.run(DAY_KEY)
    with duckdb.connect(pipeline.resources["duckdb"].database, read_only=True) as con:
        tables = dict(con.execute("SELECT table_name, comment FROM duckdb_tables()").fetchall())
        columns = {
            (t, c): comment
            for t, c, comment in con.execute(
                "SELECT table_name, column_name, comment FROM duckdb_columns() "
                "WHERE database_name = current_database() AND schema_name = 'main'"
            ).fetchall()
        }
    assert tables == GRAIN
    assert columns == {(t, c.name): c.description for t, cs in TABLES.items() for c in cs}
    assert tables["sim_daily_cost"] == (
        "One row per day and SIM with at least one event; euro summed exactly"
    )
    assert columns[("call_sms_events", "cost_eur")] == (
        "Cost in euro, exact to the micro-euro (more decimals: rounded half away from zero)"
    )
    assert columns[("group_daily_cost", "group_id")] == "Configured group id; NULL for ungrouped"


def test_comments_an_earlier_version_left_are_brought_up_to_date_and_then_left_alone(tmp_path):
    database = tmp_path / "w.duckdb"
    with duckdb.connect(str(database)) as con:
        ensure_schema(con)
        con.execute("COMMENT ON TABLE call_sms_events IS 'old words'")
        con.execute("COMMENT ON COLUMN call_sms_events.sid IS NULL")
        con.execute("COMMENT ON COLUMN sim_daily_cost.cost_eur IS 'it''s old'")
    with duckdb.connect(str(database)) as con:
        ensure_schema(con)
        assert con.execute(
            "SELECT comment FROM duckdb_tables() WHERE table_name = 'call_sms_events'"
        ).fetchall() == [(GRAIN["call_sms_events"],)]
        assert con.execute(
            "SELECT column_name, comment FROM duckdb_columns() "
            "WHERE (table_name, column_name) IN "
            "(('call_sms_events', 'sid'), ('sim_daily_cost', 'cost_eur')) ORDER BY 1"
        ).fetchall() == [("cost_eur", "Total cost, euro"), ("sid", "Provider's id of the action")]
    with duckdb.connect(str(database)) as con:
        ensure_schema(con)
        assert not Path(f"{database}.wal").exists(), "a step on an up-to-date file writes nothing"


def test_a_long_warehouse_query_draws_no_progress_bar_in_the_step_log(tmp_path, capfd):
    """DuckDB draws a progress bar on stdout for slow queries; in a Dagster step that
    lands in the run's captured log, so warehouse connections never print it."""
    from nova_pipeline.resources import WarehouseResource

    with WarehouseResource(database=str(tmp_path / "w.duckdb")).get_connection() as con:
        con.execute("SET progress_bar_time = 0")
        assert con.execute("SELECT sum(i) FROM range(20000000) t(i)").fetchone() == (
            199999990000000,
        )
    assert capfd.readouterr().out == ""


def test_a_300k_item_day_loads_with_duckdb_on_four_threads(start_simulator, make_pipeline):
    """DuckDB takes a thread per core and each needs its own memory to read a day's pages:
    with four threads under the former fixed 256 MB cap this day ran out of memory. The
    warehouse resource is the code location's, built from NOVA_DUCKDB_THREADS=4."""
    fleet = FleetSpec(seed=3, sims=15_000, groups=0, events_per_sim_day=20)
    pipeline = make_pipeline(groups="", sim=start_simulator(fleet=fleet), page_size=1000)
    settings = load_settings(
        {"NOVA_DUCKDB_THREADS": "4", "NOVA_DUCKDB_PATH": str(pipeline.root / "nova.duckdb")}
    )
    pipeline.resources["duckdb"] = build_resources(settings)["duckdb"]
    result = pipeline.run(
        DAY_KEY, selection=["call_sms_raw_pages", "call_sms_events", "call_sms_rejects"]
    )
    served = pipeline.sql("SELECT sum(item_count) FROM call_sms_raw_pages")[0][0]
    assert served > 250_000
    events = result.asset_materializations_for_node("call_sms_events")[0].metadata
    assert events["dagster/row_count"].value == served
    assert pipeline.sql("SELECT current_setting('threads')") == [(4,)]
