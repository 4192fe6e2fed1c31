"""`make bench`: throughput, memory and backfill overhead of the pipeline on this machine.

The simulator always runs as a separate process on loopback. Each end-to-end figure is
one Dagster run in a fresh Python process (so its peak RSS is its own). Writes
bench/results/latest.json and docs/benchmarks.md.

    python bench/run.py            # the full benchmark (about 8 minutes here)
    python bench/run.py --smoke    # tiny volumes, no targets (used by the test suite)
"""

from __future__ import annotations

import argparse
import datetime as dt
import http.client
import json
import math
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
from dagster._daemon.controller import DEFAULT_DAEMON_INTERVAL_SECONDS as BACKFILL_TICK_SECONDS

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from nova_pipeline.api import ClientConfig, Endpoint, NovaClient  # noqa: E402
from nova_pipeline.simulator.process import (  # noqa: E402
    free_port,
    simulator_child,
    simulator_process,
)
from nova_pipeline.ui import (  # noqa: E402
    dagster_dev,
    launch_backfill,
    project_home,
    wait_for_backfill,
)
from nova_pipeline.warehouse import TABLES  # noqa: E402

NOW = "2026-11-20T12:00:00+05:00"
ANALYSIS = REPO / "bench" / "analysis.md"
"""What limits the figures, from profiling; written by hand, appended to the report."""
DAY = dt.date(2026, 11, 18)
GROUPS = 6
"""The demo's six groups: about 85% of the SIMs are in one, so their pulls fetch most of
the day's items a second time. One end-to-end figure is measured with them."""
FULL_BATCH_DAYS = 8
"""The batched backfill at the big fleet's volume: 8 provider days of about a million
events in one run (the simulator keeps 8 days generated, so none is generated while the
run is timed). Its seconds per day put a year's first backfill in minutes."""
REPEATS = 3
"""Rates and end-to-end runs are measured this many times and the median reported: on
this shared 2-core machine one run can be 20% off the next."""
STAGES = {
    "call_sms_raw_pages": "fetch + index raw pages",
    "call_sms_events": "parse/validate + write events",
    "sim_group_membership": "group membership",
    "sim_daily_cost": "rollups",
    "group_daily_cost": "rollups",
}
TARGET_SHARE_OF_CEILING = 0.6
"""The issue's end-to-end target, as a share of the ceiling: reported as the seconds a
million-event day would have to take, next to the least its CPU allows."""
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User and system CPU that process `pid` (every thread of it) has used so far, from
    Linux's /proc: the simulator's share of a run, which runs in another process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / CLOCK_TICKS


def sim_args(sims: int, per_day: float = 20, groups: int = 0) -> list[str]:
    return [
        "--sims",
        str(sims),
        "--groups",
        str(groups),
        "--events-per-sim-day",
        str(per_day),
        "--now",
        NOW,
        "--seed",
        "11",
    ]


def ddmmyyyy(day: dt.date) -> str:
    return day.strftime("%d-%m-%Y")


def warm_up(api_url: str, first: dt.date, last: dt.date) -> None:
    """Have the simulator generate the days before anything is timed."""
    config = ClientConfig(page_size=1)
    with NovaClient(Endpoint(api_url, read_timeout_s=600), config) as client:
        day = first
        while day <= last:
            client.fetch_page(day, day, "all", 0)
            day += dt.timedelta(days=1)


def ceiling(api_url: str) -> float:
    """The project's client fetching and decoding the day, writing nothing: items/s."""
    with NovaClient(Endpoint(api_url), ClientConfig(page_size=1000)) as client:
        started = time.perf_counter()
        items = sum(page.item_count for page in client.pages(DAY, DAY, "all"))
        return items / (time.perf_counter() - started)


def page_request(page: int) -> dict:
    """The request body of one 1,000-item page of the benchmark day, every SIM."""
    return {
        "filter": {"start": ddmmyyyy(DAY), "end": ddmmyyyy(DAY)},
        "select": ["all"],
        "page": page,
        "size": 1000,
    }


def simulator_rate(api_url: str) -> float:
    """What the simulator serves to a minimal client (stdlib, no decoding): items/s."""
    host, port = api_url.split("//")[1].split("/")[0].split(":")
    conn = http.client.HTTPConnection(host, int(port))
    items, page, started = 0, 0, time.perf_counter()
    while True:
        conn.request(
            "POST",
            "/api/report/call_sms",
            body=json.dumps(page_request(page)),
            headers={"Content-Type": "application/json"},
        )
        got = conn.getresponse().read().count(b'"sid"')
        if not got:
            return items / (time.perf_counter() - started)
        items += got
        page += 1


def plain_client_rate(api_url: str) -> float:
    """The client of ../shared/PERFORMANCE_NOTES.md, on which the targets were set: an
    `httpx.Client` with keep-alive and `json.loads` of every page: items/s. For reference
    only; the ceiling is the project's own client."""
    items, page = 0, 0
    with httpx.Client(timeout=60) as client:
        started = time.perf_counter()
        while True:
            response = client.post(f"{api_url}/report/call_sms", json=page_request(page))
            response.raise_for_status()
            got = len(json.loads(response.content)["result"]["items"])
            if not got:
                return items / (time.perf_counter() - started)
            items += got
            page += 1


def run_in_child(
    api_url: str, workdir: Path, first: dt.date, last: dt.date, groups: int = 0
) -> dict:
    """One Dagster run of every asset for `first..last`, in a fresh process on an instance
    configured by the project's dagster.yaml: timings, CPU and peak RSS."""
    home = project_home(workdir / "home")
    env = {
        **os.environ,
        "NOVA_API_URL": api_url,
        "NOVA_DATA_DIR": str(workdir / "data"),
        "DAGSTER_HOME": str(home),
        "NOVA_GROUPS": ",".join(f"{g}=Group {g}" for g in range(1, groups + 1)),
    }
    out = subprocess.run(
        [sys.executable, __file__, "child", first.isoformat(), last.isoformat()],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    if out.returncode != 0:
        raise RuntimeError(f"benchmark run failed:\n{out.stderr[-4000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def child(first: str, last: str) -> None:
    """Inside the child: materialize the whole graph for `first..last` in one run, as the
    schedule (one day) or a batched backfill (a range) launches it; report as JSON."""
    import dagster as dg

    from nova_pipeline.definitions import defs

    with dg.DagsterInstance.get() as instance:
        started, cpu_started = time.perf_counter(), time.process_time()
        partition = (
            {"partition_key": first}
            if first == last
            else {
                "tags": {
                    "dagster/asset_partition_range_start": first,
                    "dagster/asset_partition_range_end": last,
                }
            }
        )
        result = defs.resolve_job_def("call_sms_job").execute_in_process(
            instance=instance,
            raise_on_error=True,
            **partition,
            run_config={"loggers": {"console": {"config": {"log_level": "ERROR"}}}},
        )
        total = time.perf_counter() - started
        cpu = time.process_time() - cpu_started
        steps: dict[str, float] = {}
        begun: dict[str, float] = {}
        for entry in instance.all_logs(result.run_id):
            event = entry.dagster_event
            if event is None or event.step_key is None:
                continue
            if event.event_type_value == "STEP_START":
                begun[event.step_key] = entry.timestamp
            elif event.event_type_value == "STEP_SUCCESS":
                steps[event.step_key] = entry.timestamp - begun[event.step_key]
    raw_days = [m.metadata for m in result.asset_materializations_for_node("call_sms_raw_pages")]
    event_days = [
        m.metadata
        for m in result.asset_materializations_for_node("call_sms_events")
        if m.asset_key == dg.AssetKey("call_sms_events")
    ]

    def run_total(days: list[dict], key: str) -> float:
        """A figure of the whole run: each day's materialization holds that day's."""
        return sum(day[key].value for day in days)

    stages: dict[str, float] = {"fetch": raw_days[0]["fetch_seconds"].value}
    stages["index raw pages"] = steps["call_sms_raw_pages"] - stages["fetch"]
    for step, seconds in steps.items():
        name = STAGES.get(step, "checks")
        if step != "call_sms_raw_pages":
            stages[name] = stages.get(name, 0.0) + seconds
    print(
        json.dumps(
            {
                "events": run_total(event_days, "dagster/row_count"),
                "items_fetched": run_total(raw_days, "items_all_pull")
                + run_total(raw_days, "items_group_pulls"),
                "body_mb": round(run_total(raw_days, "body_mb"), 2),
                "landed_mb": round(run_total(raw_days, "landed_mb"), 2),
                "seconds": total,
                "cpu_seconds": cpu,
                "stages": {k: round(v, 3) for k, v in stages.items()},
                "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
            }
        )
    )


def e2e(sims: int, workdir: Path, repeats: int, groups: int = 0) -> dict:
    """The median of `repeats` one-day runs, each into a fresh warehouse, with the CPU the
    simulator spent serving it; peak RSS is the highest of them."""
    runs = []
    with simulator_child(sim_args(sims, groups=groups)) as simulator:
        warm_up(simulator.api_url, DAY, DAY)
        pid = simulator.process.pid
        for i in range(repeats):
            served_before = cpu_seconds(pid)
            run = run_in_child(simulator.api_url, workdir / str(i), DAY, DAY, groups)
            run["simulator_cpu_seconds"] = cpu_seconds(pid) - served_before
            runs.append(run)
    result = dict(sorted(runs, key=lambda r: r["seconds"])[len(runs) // 2])
    result["events_per_s"] = result["events"] / result["seconds"]
    result["peak_rss_mb"] = max(r["peak_rss_mb"] for r in runs)
    result["all_seconds"] = [round(r["seconds"], 2) for r in runs]
    return result


def full_batch(sims: int, days: int, workdir: Path) -> dict:
    """One run of `days` days of the big fleet, as a batched backfill runs them."""
    first = DAY - dt.timedelta(days=days - 1)
    with simulator_process(sim_args(sims)) as api_url:
        warm_up(api_url, first, DAY)
        result = run_in_child(api_url, workdir, first, DAY)
    return {
        "batch_days_1m": days,
        "batch_events_1m": result["events"],
        "batch_seconds_1m": result["seconds"],
        "batch_seconds_per_day_1m": result["seconds"] / days,
        "batch_events_per_s_1m": result["events"] / result["seconds"],
        "peak_rss_mb_batch_1m": result["peak_rss_mb"],
        "year_backfill_minutes_1m": 365 * result["seconds"] / days / 60,
        "stages_batch_1m": result["stages"],
    }


def backfill(days: int, per_day_sims: int, days_per_run: int, workdir: Path) -> dict:
    """A backfill launched the way the UI does (GraphQL on `dagster dev`)."""
    home = project_home(workdir / "home")
    last = DAY
    first = last - dt.timedelta(days=days - 1)
    with simulator_process(sim_args(per_day_sims)) as api_url:
        warm_up(api_url, first, last)
        env = {
            **os.environ,
            "DAGSTER_HOME": str(home),
            "NOVA_API_URL": api_url,
            "NOVA_DATA_DIR": str(workdir / "data"),
            "NOVA_GROUPS": "",
            "NOVA_BACKFILL_DAYS_PER_RUN": str(days_per_run),
        }
        with dagster_dev(env, port=free_port()) as dev:
            partitions = [(first + dt.timedelta(days=i)).isoformat() for i in range(days)]
            launched_at = time.time()
            state = wait_for_backfill(dev.url, launch_backfill(dev.url, list(TABLES), partitions))
    if state["status"] != "COMPLETED_SUCCESS":
        raise RuntimeError(f"backfill ended {state['status']}")
    # Dagster's backfill daemon takes a launched backfill up at its next tick (every
    # BACKFILL_TICK_SECONDS in 1.13, whatever the mode, no setting): that wait is timed apart
    # from the runs, which are timed from the creation of the first to the end of the last
    # (the daemon's later bookkeeping tick is not work either). The daemon ticks as it
    # starts, so a backfill launched as soon as `dagster dev` is up, as here, waits about a
    # whole tick, the longest; one launched at any moment waits half a tick on average.
    created = min(run["creationTime"] for run in state["runs"])
    runs = max(run["endTime"] for run in state["runs"]) - created
    pickup = created - launched_at
    return {
        "runs": len(state["runs"]),
        "pickup_seconds": pickup,
        "seconds_per_day": runs / days,
        "seconds_per_day_from_launch": (pickup + runs) / days,
        "seconds_per_day_from_average_launch": (BACKFILL_TICK_SECONDS / 2 + runs) / days,
    }


def write_report(results: dict, path_json: Path, path_md: Path) -> None:
    path_json.parent.mkdir(parents=True, exist_ok=True)
    path_json.write_text(json.dumps(results, indent=2) + "\n")
    r = results
    lines = [
        "# Benchmarks",
        "",
        f"Measured by `make bench` on {r['date']}: {r['machine']}. The simulator runs as a "
        "separate process on loopback; each end-to-end figure is one Dagster run of every "
        "asset and check for one provider day, in a fresh process, without group pulls "
        "unless said. "
        f"Rates and end-to-end figures are the median of {r['repeats']} runs (1M-event day: "
        f"{', '.join(f'{x:.1f}' for x in r['e2e_seconds_1m_each_run'])} s); peak RSS is the "
        "highest.",
        "",
        "| figure | value | target |",
        "|---|---|---|",
        f"| simulator serving rate | {r['simulator_items_per_s']:,.0f} items/s | ≥ 300,000 |",
        f"| ceiling: project client fetch + decode, no writes | "
        f"{r['ceiling_events_per_s']:,.0f} items/s | — |",
        f"| end to end, 1,000,000-event day | {r['e2e_events_per_s_1m']:,.0f} events/s "
        f"({r['e2e_seconds_1m']:.1f} s) | ≥ 150,000 and ≥ 60% of ceiling |",
        f"| end to end / ceiling | {r['e2e_to_ceiling_ratio']:.0%} | ≥ 60% |",
        f"| CPU of that day: the run's process + the simulator serving it | "
        f"{r['e2e_cpu_seconds_1m']:.1f} + {r['e2e_simulator_cpu_seconds_1m']:.1f} core-seconds, "
        f"the {r['cores']} cores {r['e2e_cores_busy_1m']:.0%} busy over the run | — |",
        f"| so the least that day can take here (its CPU over {r['cores']} cores), against "
        f"what {TARGET_SHARE_OF_CEILING:.0%} of the ceiling asks | "
        f"{r['e2e_least_seconds_1m']:.1f} s, against {r['e2e_seconds_1m_at_target']:.1f} s | — |",
        f"| for reference: a plain `httpx.Client` + `json.loads`, the performance notes' "
        f"client | {r['plain_client_items_per_s']:,.0f} items/s | — |",
        f"| end to end / that plain client | {r['e2e_to_plain_client_ratio']:.0%} | — |",
        f"| same day with the {r['e2e_groups']} groups of the demo pulled too "
        f"({r['e2e_items_fetched_1m_with_groups']:,} items fetched) | "
        f"{r['e2e_events_per_s_1m_with_groups']:,.0f} events/s "
        f"({r['e2e_seconds_1m_with_groups']:.1f} s) | — |",
        f"| landing zone, 1,000,000-event day (zstd) | {r['landing_mb_1m']:.0f} MB on disk for "
        f"{r['body_mb_1m']:.0f} MB received | — |",
        f"| peak RSS, 100,000-event day | {r['peak_rss_mb_100k']:.0f} MB | — |",
        f"| peak RSS, 1,000,000-event day | {r['peak_rss_mb_1m']:.0f} MB | ≤ 400 MB |",
        f"| RSS 1M / 100k | {r['rss_ratio_1m_to_100k']:.2f} | ≤ 1.3 |",
        f"| backfill {r['backfill_days']} days x 20,000 events, batched: runs, from the "
        f"first created to the last ended (from launch) | {r['backfill_runs_batched']} runs, "
        f"{r['backfill_seconds_per_day_batched']:.2f} s/day "
        f"({r['backfill_seconds_per_day_batched_from_launch']:.2f}) | — |",
        f"| same, one run per day | {r['backfill_runs_per_run']} runs, "
        f"{r['backfill_seconds_per_day_per_run']:.2f} s/day "
        f"({r['backfill_seconds_per_day_per_run_from_launch']:.2f}) | — |",
        f"| batched / per-run seconds per day (from launch) | "
        f"{r['backfill_batched_to_per_run_ratio']:.2f} "
        f"({r['backfill_batched_to_per_run_ratio_from_launch']:.2f}) | ≤ 0.2 |",
        f"| launch to first run, Dagster's backfill daemon tick, every "
        f"{r['backfill_daemon_tick_seconds']} s (launched just after one, the longest wait): "
        f"batched, one run per day | {r['backfill_pickup_seconds_batched']:.0f} s, "
        f"{r['backfill_pickup_seconds_per_run']:.0f} s | — |",
        f"| so, launched at any moment (half a tick's wait on average): batched, one run per "
        f"day, batched / per-run | "
        f"{r['backfill_seconds_per_day_batched_from_average_launch']:.2f} s/day, "
        f"{r['backfill_seconds_per_day_per_run_from_average_launch']:.2f} s/day, "
        f"{r['backfill_batched_to_per_run_ratio_from_average_launch']:.2f} | — |",
        f"| batched backfill at full volume: {r['batch_days_1m']} days, "
        f"{r['batch_events_1m']:,} events, one run | {r['batch_seconds_per_day_1m']:.1f} s/day "
        f"({r['batch_events_per_s_1m']:,.0f} events/s), peak RSS "
        f"{r['peak_rss_mb_batch_1m']:.0f} MB | — |",
        f"| so a year of the 50,000-SIM fleet, first backfill | about "
        f"{r['year_backfill_minutes_1m']:.0f} minutes | — |",
        "",
        "Seconds per stage, 1,000,000-event day:",
        "",
        f"| stage | seconds | with {r['e2e_groups']} groups |",
        "|---|---|---|",
        *[
            f"| {k} | {v:.2f} | {r['stages_1m_with_groups'].get(k, 0):.2f} |"
            for k, v in r["stages_1m"].items()
        ],
        "",
        ANALYSIS.read_text().strip(),
        "",
    ]
    path_md.write_text("\n".join(lines))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="tiny volumes, for tests")
    parser.add_argument("--out", type=Path, default=REPO / "bench" / "results" / "latest.json")
    parser.add_argument("--md", type=Path, default=REPO / "docs" / "benchmarks.md")
    args = parser.parse_args()
    big, small, days, per_day = (50_000, 5_000, 60, 1_000) if not args.smoke else (60, 20, 3, 10)
    full_batch_days = FULL_BATCH_DAYS if not args.smoke else 2
    repeats = REPEATS if not args.smoke else 1
    results: dict = {
        "date": dt.date.today().isoformat(),
        "machine": f"{os.cpu_count()} cores, {platform.machine()}, Python "
        f"{platform.python_version()}",
        "cores": os.cpu_count() or 1,
    }
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        with simulator_process(sim_args(big)) as api_url:
            warm_up(api_url, DAY, DAY)
            results["simulator_items_per_s"] = statistics.median(
                simulator_rate(api_url) for _ in range(repeats)
            )
            results["ceiling_events_per_s"] = statistics.median(
                ceiling(api_url) for _ in range(repeats)
            )
            results["plain_client_items_per_s"] = statistics.median(
                plain_client_rate(api_url) for _ in range(repeats)
            )
        print(
            f"ceiling {results['ceiling_events_per_s']:,.0f} items/s, simulator "
            f"{results['simulator_items_per_s']:,.0f} items/s, plain httpx client "
            f"{results['plain_client_items_per_s']:,.0f} items/s",
            flush=True,
        )
        one_m = e2e(big, tmp_path / "big", repeats)
        hundred_k = e2e(small, tmp_path / "small", repeats)
        grouped = e2e(big, tmp_path / "grouped", repeats, groups=GROUPS)
        results |= {
            "repeats": repeats,
            "e2e_events_per_s_1m": one_m["events_per_s"],
            "e2e_seconds_1m": one_m["seconds"],
            "e2e_seconds_1m_each_run": one_m["all_seconds"],
            "e2e_events_1m": one_m["events"],
            "e2e_cpu_seconds_1m": one_m["cpu_seconds"],
            "e2e_simulator_cpu_seconds_1m": one_m["simulator_cpu_seconds"],
            "stages_1m": one_m["stages"],
            "peak_rss_mb_1m": one_m["peak_rss_mb"],
            "body_mb_1m": one_m["body_mb"],
            "landing_mb_1m": one_m["landed_mb"],
            "peak_rss_mb_100k": hundred_k["peak_rss_mb"],
            "e2e_events_100k": hundred_k["events"],
            "e2e_groups": GROUPS,
            "e2e_events_1m_with_groups": grouped["events"],
            "e2e_items_fetched_1m_with_groups": grouped["items_fetched"],
            "e2e_seconds_1m_with_groups": grouped["seconds"],
            "e2e_events_per_s_1m_with_groups": grouped["events_per_s"],
            "stages_1m_with_groups": grouped["stages"],
        }
        print(
            f"end to end: {one_m['events']:,} events in {one_m['seconds']:.1f} s, "
            f"peak RSS {one_m['peak_rss_mb']:.0f} MB (100k: {hundred_k['peak_rss_mb']:.0f} MB)",
            flush=True,
        )
        results |= full_batch(big, full_batch_days, tmp_path / "full_batch")
        print(
            f"batched at full volume: {results['batch_events_1m']:,} events in "
            f"{results['batch_seconds_1m']:.1f} s, peak RSS "
            f"{results['peak_rss_mb_batch_1m']:.0f} MB",
            flush=True,
        )
        results["backfill_days"] = days
        results["backfill_daemon_tick_seconds"] = BACKFILL_TICK_SECONDS
        for mode, days_per_run in (("batched", 31), ("per_run", 1)):
            timed = backfill(days, per_day, days_per_run, tmp_path / mode)
            results |= {
                f"backfill_runs_{mode}": timed["runs"],
                f"backfill_seconds_per_day_{mode}": timed["seconds_per_day"],
                f"backfill_seconds_per_day_{mode}_from_launch": timed[
                    "seconds_per_day_from_launch"
                ],
                f"backfill_seconds_per_day_{mode}_from_average_launch": timed[
                    "seconds_per_day_from_average_launch"
                ],
                f"backfill_pickup_seconds_{mode}": timed["pickup_seconds"],
            }
    results["e2e_to_ceiling_ratio"] = (
        results["e2e_events_per_s_1m"] / results["ceiling_events_per_s"]
    )
    results["e2e_to_plain_client_ratio"] = (
        results["e2e_events_per_s_1m"] / results["plain_client_items_per_s"]
    )
    cpu = results["e2e_cpu_seconds_1m"] + results["e2e_simulator_cpu_seconds_1m"]
    results["e2e_cores_busy_1m"] = cpu / (results["e2e_seconds_1m"] * results["cores"])
    results["e2e_least_seconds_1m"] = cpu / results["cores"]
    results["e2e_seconds_1m_at_target"] = results["e2e_events_1m"] / (
        TARGET_SHARE_OF_CEILING * results["ceiling_events_per_s"]
    )
    results["rss_ratio_1m_to_100k"] = results["peak_rss_mb_1m"] / results["peak_rss_mb_100k"]
    for suffix in ("", "_from_launch", "_from_average_launch"):
        results[f"backfill_batched_to_per_run_ratio{suffix}"] = (
            results[f"backfill_seconds_per_day_batched{suffix}"]
            / results[f"backfill_seconds_per_day_per_run{suffix}"]
        )
    assert results["backfill_runs_batched"] == math.ceil(days / 31)
    write_report(results, args.out, args.md)
    print(args.md.read_text())


if __name__ == "__main__":
    if len(sys.argv) > 3 and sys.argv[1] == "child":
        child(sys.argv[2], sys.argv[3])
    else:
        main()
