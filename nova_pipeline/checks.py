"""Asset checks that say when the numbers can be trusted.

Each check is one query over every day of the run (one day, the daily run's few days, or a
backfill's batch) that returns the failing rows, each with its day. The result is recorded
for each day against that day's partition, so the UI shows each day's status. Launched in
a run that names no partition (the UI's "Execute all" of an asset's checks), a check covers
every day in the table in one result that names the failing days.

Blocking checks stop the rollups of the run: costs are not computed from events that
broke a rule. The checks of a table run as one step on one connection (`table_check`):
each step costs a run about 0.1 s of Dagster bookkeeping, whatever the data.
"""

import datetime as dt
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace

import dagster as dg

# Not exported by Dagster 1.13; an evaluation needs it to say which materialization it judged.
from dagster._core.definitions.asset_checks.asset_check_evaluation import (
    AssetCheckEvaluationTargetMaterializationData as TargetMaterialization,
)
from dagster_duckdb import DuckDBResource
from duckdb import DuckDBPyConnection

from nova_pipeline.assets.common import DUCKDB_POOL, first_ten, landing_files, markdown_table
from nova_pipeline.partitions import DAILY, day_range, days_between
from nova_pipeline.resources import LandingZoneResource
from nova_pipeline.settings import current_settings
from nova_pipeline.transforms.events import GROUP_SIDS_MISSING_SQL, run_staged, stage_group_items
from nova_pipeline.warehouse import EVENT_TYPES

Days = tuple[dt.date, dt.date]
OUT_OF_WINDOW_WARN_SHARE = 0.01
HISTORY_DAYS = 14
MIN_HISTORY_DAYS = 3
WARN_SHARE = 0.5
"""A day's events, and the average cost of one, are judged against the median of the
stored days among the 14 before it (at least 3 of them): WARN below half of it or above
twice it. With less history only a day with no event is flagged: every day empty is how a
wrong account or date filter shows."""
WEEKS = 4
MIN_WEEKS = 2
"""A day outside that band is usual still when it is inside the band around the median of
the same weekday in the 4 weeks before it (at least 2 of them stored): a fleet whose
weekends fall to a third of its weekdays would else warn every weekend."""
PRECISION = 0.1
"""A figure is judged only when chance alone moves it by at most this share of it (its
standard error): half or twice the usual is then 5 standard errors away or more. For an
average cost of an event (a day's, or one type's on a day): a fixed price at any volume;
the spread of calls' costs in the simulator needs about 125 calls a day, its incoming SMS,
one in twenty charged, about 2,000. For a type's or a group's events: MIN_USUAL_EVENTS."""
MIN_USUAL_EVENTS = round(PRECISION**-2)
"""A count of n events varies by chance by about its square root, a tenth of it at 100:
a part of a day (a type, a group) is judged alone once the median of its days before is
at least this (the day's total is judged at any volume)."""
ALL_DAYS = (dt.date(1970, 1, 1), dt.date(9999, 12, 31))
Report = Iterator[dg.AssetCheckEvaluation | dg.Output]


@dataclass(frozen=True)
class Finding:
    """What a check found over its days: the rows that break it, each starting with its day."""

    days: Days
    failing: Sequence[tuple]
    headers: Sequence[str]
    problem: str
    severity: dg.AssetCheckSeverity = dg.AssetCheckSeverity.ERROR
    hint: str = ""
    errors: Callable[[tuple], bool] | None = None
    """Failing rows that are an ERROR whatever `severity` says (rejects above the limit)."""
    notes: Sequence[tuple[dt.date, str]] = ()
    """Days judged with something a reader of their figures should know (a SIM counted in
    two groups), each with what: named in the result whether it passed or not."""

    @property
    def passed(self) -> bool:
        return not self.failing

    def on(self, partition: str) -> "Finding":
        """The same finding for one of its days (a partition key, YYYY-MM-DD)."""
        day = dt.date.fromisoformat(partition)
        failing = [row for row in self.failing if str(row[0]) == partition]
        notes = [row for row in self.notes if str(row[0]) == partition]
        return replace(self, days=(day, day), failing=failing, notes=notes)

    def result(self) -> dg.AssetCheckResult:
        """One result for all the finding's days, naming the failing ones and those noted."""
        if self.days == ALL_DAYS:
            span = "all days"
        elif self.days[0] == self.days[1]:
            span = str(self.days[0])
        else:
            span = f"{self.days[0]}..{self.days[1]}"
        metadata: dict[str, object] = {"days_checked": span}
        notes = first_ten([f"{day} ({what})" for day, what in self.notes])
        if self.notes:
            metadata["notes"] = dg.MetadataValue.json({str(day): what for day, what in self.notes})
        if self.passed:
            description = f"passed for {span}" + (f"; note: {notes}" if notes else "")
            return dg.AssetCheckResult(passed=True, description=description, metadata=metadata)
        failing_days = list(dict.fromkeys(str(row[0]) for row in self.failing))
        severity = self.severity
        if self.errors is not None and any(self.errors(row) for row in self.failing):
            severity = dg.AssetCheckSeverity.ERROR
        description = f"{self.problem} on {first_ten(failing_days)}. {self.hint}".strip()
        return dg.AssetCheckResult(
            passed=False,
            severity=severity,
            description=description + (f" Note: {notes}." if notes else ""),
            metadata={
                **metadata,
                "failing_days": dg.MetadataValue.json(failing_days),
                "detail": markdown_table(self.headers, self.failing[:100]),
            },
        )


def _report(
    context: dg.AssetCheckExecutionContext, findings: Sequence[tuple[dg.AssetCheckSpec, Finding]]
) -> Report:
    """Record each day of a partitioned run against its own partition.

    In Dagster 1.13 the result of a range run (a backfill's batch, the daily run of yesterday
    and the days before it) is recorded with no partition, so the UI would show every day's
    check as skipped. An evaluation can name its partition and the materialization it
    judged; the check's output is still yielded, as the steps a blocking check gates wait
    on it. A check run with no partition gives one evaluation over every day, with no
    partition: a check result there fails the step, as Dagster looks for the partition of
    the materialization it judged.
    """
    partitioned = context.has_partition_key or context.has_partition_key_range
    keys = context.partition_keys if partitioned else [None]
    targets = {
        asset: _latest_materializations(context.instance, asset, keys) if partitioned else {}
        for asset in {spec.asset_key for spec, _ in findings}
    }
    assets_def = context.op_execution_context.assets_def
    for spec, finding in findings:
        yield dg.Output(None, output_name=assets_def.get_output_name_for_asset_check_key(spec.key))
        for key in keys:
            day = (finding.on(key) if key else finding).result()
            yield dg.AssetCheckEvaluation(
                asset_key=spec.asset_key,
                check_name=spec.name,
                passed=day.passed,
                metadata=day.metadata,
                severity=day.severity,
                description=day.description,
                blocking=spec.blocking,
                partition=key,
                target_materialization_data=targets[spec.asset_key].get(key),
            )


def _latest_materializations(
    instance: dg.DagsterInstance, asset: dg.AssetKey, keys: Sequence[str]
) -> dict[str, TargetMaterialization]:
    """Each day's latest materialization of `asset`: the one its check result is about."""
    latest: dict[str, TargetMaterialization] = {}
    records_filter = dg.AssetRecordsFilter(asset_key=asset, asset_partitions=list(keys))
    cursor = None
    while True:
        page = instance.fetch_materializations(records_filter, limit=len(keys), cursor=cursor)
        for record in page.records:
            latest.setdefault(
                record.partition_key,
                TargetMaterialization(
                    storage_id=record.storage_id, run_id=record.run_id, timestamp=record.timestamp
                ),
            )
        if len(latest) == len(keys) or not page.has_more:
            return latest
        cursor = page.cursor


TableCheck = Callable[[DuckDBPyConnection, Days], Finding]
TABLE_CHECKS: dict[str, dict[str, tuple[dg.AssetCheckSpec, TableCheck]]] = {}


def table_check(
    asset: str,
    blocking: bool = False,
    additional_deps: Sequence[str] = (),
    *,
    description: str,
):
    """A check of the table `asset`, run with the table's other checks in its step."""

    def register(fn: TableCheck) -> TableCheck:
        spec = dg.AssetCheckSpec(
            fn.__name__,
            asset=asset,
            description=description,
            blocking=blocking,
            additional_deps=additional_deps,
            partitions_def=DAILY,
        )
        TABLE_CHECKS.setdefault(asset, {})[fn.__name__] = (spec, fn)
        return fn

    return register


def _days(context: dg.AssetCheckExecutionContext) -> Days:
    """The run's days; a check run on its own, with no partition, covers every day."""
    if context.has_partition_key or context.has_partition_key_range:
        return day_range(context)
    return ALL_DAYS


def _query(con: DuckDBPyConnection, sql: str, days: Days) -> list:
    return con.execute(sql, {"start": days[0], "end": days[1]}).fetchall()


@table_check(
    "call_sms_events",
    blocking=True,
    description="No sid appears twice, within a day or across days.",
)
def sids_unique(con: DuckDBPyConnection, days: Days) -> Finding:
    failing = _query(
        con,
        """
        SELECT r.day, count(*) FROM call_sms_events r
        SEMI JOIN call_sms_events o ON o.sid = r.sid AND o.rowid <> r.rowid
        WHERE r.day BETWEEN $start AND $end GROUP BY r.day ORDER BY r.day""",
        days,
    )
    return Finding(days, failing, ["day", "rows sharing a sid"], "duplicate sids")


@table_check(
    "call_sms_events",
    blocking=True,
    description=f"Every event type is one of {', '.join(EVENT_TYPES)}.",
)
def types_known(con: DuckDBPyConnection, days: Days) -> Finding:
    failing = _query(
        con,
        f"""
        SELECT day, count(*), list(DISTINCT type) FROM call_sms_events
        WHERE day BETWEEN $start AND $end AND type NOT IN {EVENT_TYPES}
        GROUP BY day ORDER BY day""",
        days,
    )
    return Finding(days, failing, ["day", "events", "types"], "unknown event types")


@table_check(
    "call_sms_events",
    blocking=True,
    description="No event has a negative cost.",
)
def cost_not_negative(con: DuckDBPyConnection, days: Days) -> Finding:
    failing = _query(
        con,
        """
        SELECT day, count(*), min(cost_eur) FROM call_sms_events
        WHERE day BETWEEN $start AND $end AND cost_eur < 0 GROUP BY day ORDER BY day""",
        days,
    )
    return Finding(days, failing, ["day", "events", "lowest cost €"], "negative costs")


@table_check(
    "call_sms_events",
    blocking=True,
    additional_deps=["call_sms_rejects"],
    description=(
        "Share of API items quarantined in call_sms_rejects: WARN when there are any, ERROR "
        "(blocking the rollups) above NOVA_REJECT_ERROR_SHARE (default 1%) on any day."
    ),
)
def rejects_share(con: DuckDBPyConnection, days: Days) -> Finding:
    limit = current_settings().reject_error_share
    failing = _query(
        con,
        """
        WITH items AS (
            SELECT day, sum(item_count) AS items FROM call_sms_raw_pages
            WHERE day BETWEEN $start AND $end GROUP BY day),
        rejects AS (
            SELECT day, count(*) AS rejects, list(DISTINCT reason)[:5] AS reasons
            FROM call_sms_rejects WHERE day BETWEEN $start AND $end GROUP BY day)
        SELECT day, rejects, items, round(rejects / items, 4), reasons
        FROM rejects JOIN items USING (day) ORDER BY day""",
        days,
    )
    return Finding(
        days,
        failing,
        ["day", "rejects", "items", "share", "reasons"],
        "items quarantined",
        severity=dg.AssetCheckSeverity.WARN,
        errors=lambda row: row[3] > limit,
        hint=f"ERROR above a share of {limit:.2%} (NOVA_REJECT_ERROR_SHARE); see call_sms_rejects.",
    )


@table_check(
    "call_sms_events",
    description=(
        "Share of events whose timestamp falls outside the requested day in NOVA_TIMEZONE: "
        f"WARN above {OUT_OF_WINDOW_WARN_SHARE:.0%}, which usually means the time zone "
        "setting does not match the provider's."
    ),
)
def out_of_window_share(con: DuckDBPyConnection, days: Days) -> Finding:
    failing = _query(
        con,
        f"""
        SELECT day, count(*) FILTER (WHERE out_of_window) AS outside, count(*) AS events,
               round(outside / events, 4) AS share
        FROM call_sms_events WHERE day BETWEEN $start AND $end
        GROUP BY day HAVING share > {OUT_OF_WINDOW_WARN_SHARE} ORDER BY day""",
        days,
    )
    return Finding(
        days,
        failing,
        ["day", "outside the day", "events", "share"],
        "many events outside the requested day",
        severity=dg.AssetCheckSeverity.WARN,
        hint=f"Check NOVA_TIMEZONE (now {DAILY.timezone}) against the provider's report day.",
    )


def _days_judged(con: DuckDBPyConnection, days: Days) -> list[dt.date]:
    """The run's days; with no partition, every day pulled, one that came back empty too
    (each pull leaves its closing empty page in the raw index)."""
    if days == ALL_DAYS:
        pulled = "SELECT DISTINCT day FROM call_sms_raw_pages ORDER BY day"
        return [day for (day,) in con.execute(pulled).fetchall()]
    return days_between(*days)


def _unusual_days(
    con: DuckDBPyConnection,
    days: Days,
    figure: tuple[str, str],
    of_no_event: str,
    few: str,
    problem: str,
    hint: str,
    judged_if: str = "true",
    table: str = "call_sms_events",
    parts: tuple[str, str] | None = None,
    part_usual_at_least: int = 0,
    whole: bool = True,
) -> Finding:
    """A WARN on the days whose `figure` (its column's name, and an aggregate of a day's
    rows of `table`) is outside the band around the median of the stored days among the
    HISTORY_DAYS before each, and outside the band around the median of the same weekday
    in the WEEKS before it where MIN_WEEKS of them are stored; or, with less history, for
    which `few` holds. A day with no row has `of_no_event` as its figure and stays out of
    later days' medians. Only the figures whose rows meet `judged_if` (a condition on their
    aggregates) are judged and make the medians.

    `parts` (a name, and an expression of a row that is never NULL: the type) judges each
    part's figure too, against that part's own days, in a row of its own after the day's
    (or instead of it, where `whole` is false): each part of a day with rows, or of one of
    the days before it, a part missing from the day having `of_no_event` as its figure. A
    part's row is judged once its usual is at least `part_usual_at_least`, and only on that
    band, nor on a weekday whose usual is less: too little history is for the day's row to
    judge. Where those days have one part only, its row would repeat the day's and is left
    out, if that is judged."""
    judged = _days_judged(con, days)
    failing: list[tuple] = []
    recent, weekday = f"h.day >= t.day - {HISTORY_DAYS}", "(t.day - h.day) % 7 = 0"

    def in_band(usual: str) -> str:
        return f"figure BETWEEN {usual} * {WARN_SHARE} AND {usual} / {WARN_SHARE}"

    # One scan for both: a part is never NULL, so NULL is the grouping set of the whole day.
    # Past HISTORY_DAYS only the judged days' weekdays are read: a one-day run reads 17 of 29.
    part, groups = (
        (parts[1], f"GROUPING SETS ((day), (day, {parts[1]}))") if parts else ("NULL", "day")
    )
    if judged:
        failing = con.execute(
            f"""
            WITH grouped AS (
                SELECT day, {part} AS part, {figure[1]} AS figure, {judged_if} AS judgeable
                FROM {table}
                WHERE day BETWEEN $first - {7 * WEEKS} AND $last
                  AND (day >= $first - {HISTORY_DAYS} OR list_contains($weekdays, isodow(day)))
                GROUP BY {groups}),
            figures AS (SELECT day, part, figure FROM grouped WHERE judgeable),
            targets AS (
                SELECT day, NULL AS part FROM unnest($days) AS d(day) WHERE {whole}
                UNION ALL
                SELECT DISTINCT c.day, h.part FROM grouped c
                JOIN figures h ON h.part IS NOT NULL
                              AND h.day BETWEEN c.day - {HISTORY_DAYS} AND c.day
                WHERE c.part IS NULL AND list_contains($days, c.day)),
            judged AS (
                SELECT t.day, t.part, coalesce(c.figure, {of_no_event}) AS figure,
                       count(h.day) FILTER ({recent}) AS history,
                       round(median(h.figure) FILTER ({recent}), 6) AS usual,
                       count(h.day) FILTER ({weekday}) AS weeks,
                       round(median(h.figure) FILTER ({weekday}), 6) AS weekday_usual,
                       count(t.part) OVER (PARTITION BY t.day) AS parts_of_day
                FROM targets t
                LEFT JOIN figures c ON c.day = t.day AND c.part IS NOT DISTINCT FROM t.part
                LEFT JOIN figures h ON h.part IS NOT DISTINCT FROM t.part
                                   AND h.day BETWEEN t.day - {7 * WEEKS} AND t.day - 1
                GROUP BY t.day, t.part, c.figure)
            SELECT day, {"coalesce(part, 'all'), " if parts else ""}figure,
                   coalesce(usual::VARCHAR, '-'), history,
                   CASE WHEN usual <> 0 THEN round(figure / usual, 2)::VARCHAR ELSE '-' END,
                   CASE WHEN weeks >= {MIN_WEEKS} THEN weekday_usual::VARCHAR ELSE '-' END
            FROM judged
            WHERE CASE WHEN history >= {MIN_HISTORY_DAYS}
                  THEN NOT {in_band("usual")}
                       AND NOT coalesce(weeks >= {MIN_WEEKS} AND ({in_band("weekday_usual")}
                           OR part IS NOT NULL AND weekday_usual < {part_usual_at_least}), false)
                       AND (part IS NULL OR usual >= {part_usual_at_least}
                            AND (parts_of_day > 1 OR NOT {whole}))
                  ELSE part IS NULL AND {few} END
            ORDER BY day, part NULLS FIRST""",
            {
                "days": judged,
                "first": judged[0],
                "last": judged[-1],
                "weekdays": sorted({day.isoweekday() for day in judged}),
            },
        ).fetchall()
    return Finding(
        days,
        failing,
        [
            "day",
            *([parts[0]] if parts else []),
            figure[0],
            "median of the days before",
            "days compared",
            "ratio",
            "median of the same weekday",
        ],
        problem,
        severity=dg.AssetCheckSeverity.WARN,
        hint=hint,
    )


BAND = (
    f"less than {WARN_SHARE:.0%} or more than {1 / WARN_SHARE:.0%} of the median of the "
    f"stored days among the {HISTORY_DAYS} before it (once {MIN_HISTORY_DAYS} of them are "
    "stored), and of the median of the same weekday in the "
    f"{WEEKS} weeks before it where {MIN_WEEKS} of them are stored (so that a fleet's quiet "
    "weekends are usual"
)


@table_check(
    "call_sms_events",
    description=(
        f"Events per day are in the usual range: WARN when a day has {BAND}), over all its "
        "events and for each type alone, against that type's days, once it has "
        f"{MIN_USUAL_EVENTS} events on a usual day: a type that stops arriving shows though "
        f"the day's total stays in range. With fewer than {MIN_HISTORY_DAYS} days stored, "
        "only a day with no event at all warns. A day with no events, or far fewer, was "
        "usually pulled before the provider's daily sync had brought it in."
    ),
)
def daily_volume_usual(con: DuckDBPyConnection, days: Days) -> Finding:
    return _unusual_days(
        con,
        days,
        ("events", "count(*)"),
        of_no_event="0",
        few="figure = 0",
        problem="an unusual number of events",
        parts=("type", "type"),
        part_usual_at_least=MIN_USUAL_EVENTS,
        hint=(
            "A day pulled before the provider synced it is pulled again by the daily "
            "schedule (NOVA_LOOKBACK_DAYS), an empty yesterday within hours by the "
            "call_sms_late_sync sensor, and any day can be re-run now. A lasting change may "
            "be the fleet itself, or the account or groups the token sees; one type alone "
            "missing or far off is more likely the provider's report than the fleet."
        ),
    )


@table_check(
    "call_sms_events",
    description=(
        f"The average cost of an event is in the usual range: WARN when a day's is {BAND}), "
        "over all its events and for each type alone, against that type's days: a new "
        "price of SMS shows where calls carry most of the cost. An average is judged when "
        "the day has events enough to know it within a tenth (its standard error), so "
        "that a few dear calls on a quiet day are not taken for a new price. How many "
        "events a day has is daily_volume_usual's to judge; this one shows a change of "
        "price that every other check passes, the sums reconciling to the cent: a new "
        "tariff, costs re-rated at the provider, or costs sent in another unit (cents for "
        "euro: 100 times the usual)."
    ),
)
def cost_per_event_usual(con: DuckDBPyConnection, days: Days) -> Finding:
    return _unusual_days(
        con,
        days,
        ("€ an event", "round(avg(cost_eur), 6)"),
        of_no_event="NULL",
        few="false",
        problem="an unusual average cost of an event",
        judged_if=f"stddev_samp(cost_eur) / sqrt(count(*)) <= {PRECISION} * avg(cost_eur)",
        parts=("type", "type"),
        hint=(
            "Compare a few of the day's events with the provider's tariff. A re-rating the "
            "provider has since corrected is picked up by re-running the day; a new tariff "
            f"stops warning once it is the median of the {HISTORY_DAYS} days before."
        ),
    )


@dg.asset_check(
    asset="sim_group_membership",
    partitions_def=DAILY,
    pool=DUCKDB_POOL,
    blocking=True,
    additional_deps=["call_sms_events"],
    description=(
        "Every valid sid a group pull returned is in the events of the account-wide pull: "
        "of that day, or of the day a repeated copy of it was kept."
    ),
)
def group_sids_in_account_pull(
    context: dg.AssetCheckExecutionContext,
    duckdb: DuckDBResource,
    landing_zone: LandingZoneResource,
) -> Report:
    """A warehouse check that also reads the group pulls' landing files."""
    days = _days(context)
    with duckdb.get_connection() as con:
        failing = run_staged(
            con,
            stage_group_items,
            *landing_files(con, landing_zone.landing(), *days, "g\\_%"),
            lambda: con.execute(GROUP_SIDS_MISSING_SQL).fetchall(),
            context.log.warning,
        )
    finding = Finding(
        days,
        failing,
        ["day", "pull", "sids missing from `all`"],
        "group pulls returned sids the account pull did not",
    )
    yield from _report(context, [(context.check_specs[0], finding)])


@table_check(
    "sim_daily_cost",
    blocking=True,
    additional_deps=["call_sms_events"],
    description="Per day, sim_daily_cost adds up to call_sms_events: events and euro, exactly.",
)
def sim_cost_reconciles(con: DuckDBPyConnection, days: Days) -> Finding:
    failing = _query(
        con,
        """
        WITH e AS (SELECT day, count(*) AS n, sum(cost_eur) AS cost FROM call_sms_events
                   WHERE day BETWEEN $start AND $end GROUP BY day),
             s AS (SELECT day, sum(events) AS n, sum(cost_eur) AS cost FROM sim_daily_cost
                   WHERE day BETWEEN $start AND $end GROUP BY day)
        SELECT day, e.n, s.n, e.cost, s.cost FROM e FULL JOIN s USING (day)
        WHERE e.n IS DISTINCT FROM s.n OR e.cost IS DISTINCT FROM s.cost ORDER BY day""",
        days,
    )
    return Finding(
        days,
        failing,
        ["day", "events", "sim events", "events €", "sim €"],
        "per-SIM costs do not add up to the events",
    )


@table_check(
    "group_daily_cost",
    blocking=True,
    additional_deps=["sim_daily_cost", "sim_group_membership"],
    description=(
        "Per day, the group rows (groups + ungrouped) add up to sim_daily_cost, events and "
        "euro, exactly, a SIM in two or more of the day's groups counted once in each of "
        "them, as the group rows count it; the result names the days where one is."
    ),
)
def group_cost_reconciles(con: DuckDBPyConnection, days: Days) -> Finding:
    rows = _query(
        con,
        """
        WITH m AS (SELECT day, sim_id, count(DISTINCT group_id) AS groups
                   FROM sim_group_membership
                   SEMI JOIN group_daily_cost g USING (day, group_id)
                   WHERE day BETWEEN $start AND $end GROUP BY day, sim_id),
             s AS (SELECT day, sum(events * greatest(m.groups, 1)) AS n,
                          sum(cost_eur * greatest(m.groups, 1)) AS cost,
                          count(*) FILTER (WHERE m.groups > 1) AS shared
                   FROM sim_daily_cost LEFT JOIN m USING (day, sim_id)
                   WHERE day BETWEEN $start AND $end GROUP BY day),
             g AS (SELECT day, sum(events) AS n, sum(cost_eur) AS cost FROM group_daily_cost
                   WHERE day BETWEEN $start AND $end GROUP BY day)
        SELECT day, s.n, g.n, s.cost, g.cost, coalesce(s.shared, 0)
        FROM s FULL JOIN g USING (day)
        WHERE s.n IS DISTINCT FROM g.n OR s.cost IS DISTINCT FROM g.cost OR s.shared > 0
        ORDER BY day""",
        days,
    )
    return Finding(
        days,
        [row[:5] for row in rows if row[1] != row[2] or row[3] != row[4]],
        ["day", "SIM events, once per group", "group events", "SIM €, once per group", "group €"],
        "group costs do not add up to the account total",
        notes=[
            (
                row[0],
                f"{row[5]} SIM{'s' if row[5] > 1 else ''} in two or more groups, counted in each",
            )
            for row in rows
            if row[5]
        ],
    )


# A group's label depends on its id alone, so that a group renamed in NOVA_GROUPS keeps its
# history: its days before the rename stored the old name.
GROUPS_BY_LATEST_NAME = """(
    SELECT g.*, l.label FROM group_daily_cost g
    JOIN (SELECT group_id, arg_max(group_name, day) || ' (' || group_id || ')' AS label
          FROM group_daily_cost WHERE group_id IS NOT NULL GROUP BY group_id) l USING (group_id))"""


@table_check(
    "group_daily_cost",
    description=(
        f"Each group's events per day are in the usual range: WARN when a group has {BAND}), "
        f"once it has {MIN_USUAL_EVENTS} events on a usual day. A group whose SIMs were "
        "moved away at the provider, or whose pull came back empty, shows here though "
        "every other check passes: its SIMs count as ungrouped, and the sums still "
        "reconcile. A group not pulled on a day (no longer in NOVA_GROUPS) is not judged "
        "there, nor are the ungrouped SIMs: they change with NOVA_GROUPS. A group is known "
        "by its id: renamed in NOVA_GROUPS, it keeps its days, shown under its latest name."
    ),
)
def group_volume_usual(con: DuckDBPyConnection, days: Days) -> Finding:
    return _unusual_days(
        con,
        days,
        ("events", "sum(events)"),
        of_no_event="NULL",
        few="false",
        problem="a group with an unusual number of events",
        table=GROUPS_BY_LATEST_NAME,
        parts=("group", "label"),
        part_usual_at_least=MIN_USUAL_EVENTS,
        whole=False,
        hint=(
            "Compare the group's SIMs with the provider's portal: SIMs moved out of it "
            "count as ungrouped. A change meant stops warning once it is the median of "
            f"the {HISTORY_DAYS} days before."
        ),
    )


def _checks_step(asset: str) -> dg.AssetChecksDefinition:
    """The checks of `asset` as one step, `<asset>_checks`; each is its own check in the UI,
    runnable alone."""
    checks = TABLE_CHECKS[asset]

    @dg.multi_asset_check(
        specs=[spec for spec, _ in checks.values()],
        name=f"{asset}_checks",
        can_subset=True,
        pool=DUCKDB_POOL,
    )
    def step(context: dg.AssetCheckExecutionContext, duckdb: DuckDBResource) -> Report:
        days = _days(context)
        with duckdb.get_connection() as con:
            findings = [
                (spec, check(con, days))
                for spec, check in checks.values()
                if spec.key in context.selected_asset_check_keys
            ]
        yield from _report(context, findings)

    return step


ASSET_CHECKS = [
    _checks_step("call_sms_events"),
    group_sids_in_account_pull,
    _checks_step("sim_daily_cost"),
    _checks_step("group_daily_cost"),
]
