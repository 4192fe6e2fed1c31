"""Automation: the daily schedule with its lookback window and its catch-up of days it
missed, the re-pull of a day the provider had not synced yet, and partition-aware
freshness."""

import datetime as dt
from zoneinfo import ZoneInfo

import dagster as dg

from nova_pipeline.assets.common import RAW_PAGES
from nova_pipeline.clock import local_time
from nova_pipeline.jobs import WAREHOUSE_ASSETS, call_sms_job
from nova_pipeline.partitions import DAILY, consecutive_ranges, days_between
from nova_pipeline.settings import current_settings

DAILY_SCHEDULE = "call_sms_daily"
SCHEDULE_NAME = "dagster/schedule_name"
"""Set by Dagster on every run a schedule starts."""
CATCH_UP_TAG = "nova/catch_up"
RANGE_START = "dagster/asset_partition_range_start"
RANGE_END = "dagster/asset_partition_range_end"
LATE_SYNC_TAG = "nova/late_sync_day"
WILL_RETRY = "dagster/will_retry"
"""Set on a failed run Dagster re-executes (dagster.yaml's run_retries: a run that died)."""
LATE_SYNC_INTERVAL_S = 30 * 60
LATE_SYNC_MAX_REPULLS = 6
"""An empty, missing or unloaded yesterday is pulled again every 30 minutes, at most 6 times;
after that it waits for the next daily run, which pulls it again within its lookback."""


def days_for_tick(tick: dt.datetime, timezone: str, lookback_days: int) -> tuple[dt.date, dt.date]:
    """Yesterday (in the provider's zone, at the tick) and the `lookback_days` before it.

    The provider syncs once a day, so yesterday is the newest complete day; the days before
    it are pulled again because the sync can still add late records or re-rate old ones.
    """
    yesterday = tick.astimezone(ZoneInfo(timezone)).date() - dt.timedelta(days=1)
    return yesterday - dt.timedelta(days=lookback_days), yesterday


def _cron(at: str) -> str:
    time = local_time(at)
    return f"{time.minute} {time.hour} * * *"


LOADED_FROM_PULL = [
    spec.key for asset in WAREHOUSE_ASSETS for spec in asset.specs if spec.key != RAW_PAGES
]
"""The assets a day's pull is loaded into: the day is in once each has materialized it since."""


def days_never_pulled(
    instance: dg.DagsterInstance, start_date: dt.date, before: dt.date
) -> list[dt.date]:
    """The days from the first day of the schedule's first run up to `before` (excluded)
    that no run has pulled: Dagster starts only the latest tick a schedule missed, so while
    the daemon was down (the machine off) the days beyond the lookback were never asked
    for; nor were those of daily runs that failed before they pulled (the API or the
    warehouse out) for longer than the lookback. Days before the first run are a backfill's:
    the schedule does not pull a history nobody asked it for; nor days before `start_date`
    (NOVA_START_DATE, which may have moved since that run)."""
    first_runs = instance.get_run_records(
        dg.RunsFilter(tags={SCHEDULE_NAME: DAILY_SCHEDULE}), limit=1, ascending=True
    )
    if not first_runs or RANGE_START not in first_runs[0].dagster_run.tags:
        return []
    since = max(dt.date.fromisoformat(first_runs[0].dagster_run.tags[RANGE_START]), start_date)
    pulled = instance.get_materialized_partitions(RAW_PAGES)
    return [
        day
        for day in days_between(since, before - dt.timedelta(days=1))
        if day.isoformat() not in pulled
    ]


def build_daily_schedule(settings=None) -> dg.ScheduleDefinition:
    settings = settings or current_settings()

    @dg.schedule(
        name=DAILY_SCHEDULE,
        job=call_sms_job,
        cron_schedule=_cron(settings.schedule_time),
        execution_timezone=settings.timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description=(
            f"Every day at {settings.schedule_time} {settings.timezone} (after the provider's "
            f"daily sync): yesterday, and the {settings.lookback_days} days before it again "
            "(late and re-rated records), in one run. Re-pulled days are replaced, not doubled. "
            "Days since its first run that no run has pulled (the machine off, the API down "
            "for longer than that) follow, in runs of at most "
            f"{settings.backfill_days_per_run} days."
        ),
    )
    def call_sms_daily(context: dg.ScheduleEvaluationContext) -> list[dg.RunRequest]:
        first, last = days_for_tick(
            context.scheduled_execution_time, settings.timezone, settings.lookback_days
        )
        first = max(first, settings.start_date)
        missed = days_never_pulled(context.instance, settings.start_date, before=first)
        if missed:
            context.log.warning(
                f"{len(missed)} day{'s' * (len(missed) > 1)} from {missed[0]} to {missed[-1]} "
                "never pulled (the daemon down, or runs failing, for longer than the lookback): "
                "they are pulled in runs of their own, after yesterday's"
            )
        return [
            dg.RunRequest(
                run_key=f"daily-{last.isoformat()}",
                tags={RANGE_START: first.isoformat(), RANGE_END: last.isoformat()},
            ),
            *(
                dg.RunRequest(
                    run_key=f"daily-{last.isoformat()}-catch-up-{start.isoformat()}",
                    tags={
                        RANGE_START: start.isoformat(),
                        RANGE_END: end.isoformat(),
                        CATCH_UP_TAG: "true",
                    },
                )
                for start, end in consecutive_ranges(missed, settings.backfill_days_per_run)
            ),
        ]

    return call_sms_daily


def late_sync_request(
    instance: dg.DagsterInstance,
    now: dt.datetime,
    timezone: str,
    max_repulls: int = LATE_SYNC_MAX_REPULLS,
) -> dg.RunRequest | dg.SkipReason:
    """A run of yesterday alone when its latest pull came back with no item, or when the
    last scheduled run of it (the daily run, or a re-pull) failed before every asset had
    loaded its latest pull.

    The provider syncs once a day; when the daily run comes before the sync, yesterday is
    stored empty; when the API is down for longer than a request's retries, the warehouse
    stays held past its wait, or a blocking check on an older day of its lookback stops
    every day's rollups, the daily run fails, before or after it pulled the day: either way
    the day would wait for the next day's run. The run key names the empty pull or the
    failed run, and the re-pulls before it: each is pulled again once, and a re-pull that
    failed is tried again at the next tick. A day held back by a blocking check of its own
    is not pulled again (the same items would stop at the same check), nor is a failed run
    started by hand (a backfill): those are left to whoever reads the check or started the
    run. A run that died is left to Dagster's own re-execution of it while one is coming.
    """
    _, yesterday = days_for_tick(now, timezone, 0)
    day = yesterday.isoformat()
    pull = _latest_materialization(instance, RAW_PAGES, day)
    empty = pull is not None and day in _empty_days(pull)
    behind = _not_loaded(instance, day, pull) if pull and not empty else []
    if pull and not empty and not behind:
        return dg.SkipReason(f"{day} has items, loaded into every asset")
    repulls = instance.get_runs(dg.RunsFilter(tags={LATE_SYNC_TAG: day}))
    if any(not run.is_finished for run in repulls):
        return dg.SkipReason(f"a re-pull of {day} is queued or running")
    if empty:
        state, cause = "empty", str(pull.storage_id)
    else:
        last = _last_scheduled_run(instance, day)
        if last is None or last.status != dg.DagsterRunStatus.FAILURE:
            if pull is None:
                return dg.SkipReason(f"{day} has not been pulled yet (the daily schedule does it)")
            return dg.SkipReason(
                f"{day} has items not yet loaded into {', '.join(behind)}, and no scheduled "
                "run of it failed"
            )
        if last.tags.get(WILL_RETRY) == "true":
            return dg.SkipReason(
                f"run {last.run_id} of {day} died and Dagster re-executes it (run_retries)"
            )
        if checks := _blocking_checks_failed(instance, last.run_id, day):
            return dg.SkipReason(
                f"{day} failed the blocking check{'s' * (len(checks) > 1)} {', '.join(checks)} "
                f"in run {last.run_id}: a re-pull would stop at the same check. Its result says "
                "what is wrong; the next daily run pulls the day again."
            )
        state, cause = ("not pulled" if pull is None else "not loaded"), f"failed-{last.run_id}"
    if len(repulls) >= max_repulls:
        return dg.SkipReason(
            f"{day} is still {state} after {len(repulls)} re-pull{'s' * (len(repulls) != 1)}; "
            "the next daily run pulls it again"
        )
    return dg.RunRequest(
        run_key=f"late-sync-{day}-{cause}-{len(repulls)}",
        tags={RANGE_START: day, RANGE_END: day, LATE_SYNC_TAG: day},
    )


def _latest_materialization(
    instance: dg.DagsterInstance, asset: dg.AssetKey, day: str
) -> dg.EventLogRecord | None:
    records = instance.fetch_materializations(
        dg.AssetRecordsFilter(asset_key=asset, asset_partitions=[day]), limit=1
    ).records
    return records[0] if records else None


def _empty_days(pull: dg.EventLogRecord) -> list[str]:
    empty_days = pull.asset_materialization.metadata.get("empty_days")
    return empty_days.value if empty_days is not None else []


def _not_loaded(instance: dg.DagsterInstance, day: str, pull: dg.EventLogRecord) -> list[str]:
    """The assets whose latest materialization of `day` came before its latest pull."""
    return [
        asset.to_user_string()
        for asset in LOADED_FROM_PULL
        if (latest := _latest_materialization(instance, asset, day)) is None
        or latest.storage_id < pull.storage_id
    ]


def _last_scheduled_run(instance: dg.DagsterInstance, day: str) -> dg.DagsterRun | None:
    """The latest of the daily run that ended at `day` and this sensor's re-pulls of it."""
    daily = {SCHEDULE_NAME: DAILY_SCHEDULE, RANGE_END: day}
    records = [
        record
        for tags in (daily, {LATE_SYNC_TAG: day})
        for record in instance.get_run_records(dg.RunsFilter(tags=tags), limit=1)
    ]
    return max(records, key=lambda r: r.create_timestamp).dagster_run if records else None


def _blocking_checks_failed(instance: dg.DagsterInstance, run_id: str, day: str) -> list[str]:
    """The blocking checks that failed with ERROR on `day` in the run."""
    evaluations = (
        entry.dagster_event.asset_check_evaluation_data
        for entry in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
    )
    return sorted(
        {
            e.check_name
            for e in evaluations
            if e.partition == day
            and e.blocking
            and not e.passed
            and e.severity == dg.AssetCheckSeverity.ERROR
        }
    )


def build_late_sync_sensor(settings=None) -> dg.SensorDefinition:
    settings = settings or current_settings()

    @dg.sensor(
        name="call_sms_late_sync",
        job=call_sms_job,
        minimum_interval_seconds=LATE_SYNC_INTERVAL_S,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=(
            f"Every {LATE_SYNC_INTERVAL_S // 60} minutes: when yesterday's latest pull had no "
            "item (the provider had not synced it yet), or the daily run failed before every "
            "asset had loaded yesterday (the API down, the warehouse held, another day's "
            f"blocking check), pull yesterday again, at most {LATE_SYNC_MAX_REPULLS} times; not "
            "when yesterday's own blocking check failed."
        ),
    )
    def call_sms_late_sync(context: dg.SensorEvaluationContext) -> dg.RunRequest | dg.SkipReason:
        return late_sync_request(context.instance, dt.datetime.now(dt.UTC), settings.timezone)

    return call_sms_late_sync


def _described(checks: dg.AssetChecksDefinition, description: str) -> dg.AssetChecksDefinition:
    """The same checks, run by the same op, with `description` in place of the factory's
    "Evaluates freshness for targeted asset.", which does not say what is asked of the day."""
    return dg.AssetChecksDefinition.create(
        keys_by_input_name=checks.keys_by_input_name,
        node_def=checks.node_def,
        check_specs_by_output_name={
            output: dg.AssetCheckSpec(
                spec.name,
                asset=spec.asset_key,
                description=description,
                blocking=spec.blocking,
                metadata=spec.metadata,
                additional_deps=spec.additional_deps,
            )
            for output, spec in checks.check_specs_by_output_name.items()
        },
        can_subset=True,
    )


# Freshness: "yesterday's partition of every asset is in by the deadline". Dagster 1.13's
# FreshnessPolicy judges an asset by its latest materialization of any partition, so a
# backfill of old days would make it look fresh (dagster discussion #34023). The time-
# partition freshness checks look up the one partition that must exist (the last day
# completed before the latest deadline), which is the question our users ask. They are
# marked superseded, not deprecated; revisit when FreshnessPolicy learns partitions.
def build_freshness_checks(deadline: str) -> list[dg.AssetChecksDefinition]:
    timezone = DAILY.timezone
    description = (
        f"Yesterday is in by {deadline} provider time (NOVA_FRESHNESS_DEADLINE, {timezone}): "
        f"from {deadline}, a WARN until yesterday's partition is materialized (before "
        f"{deadline}, the day before yesterday is the one asked for). freshness_checks_sensor "
        "judges it within a minute of each deadline, and again after each materialization "
        "while it warns. It asks only that the day was materialized; what the day holds is "
        "for the other checks."
    )
    return [
        _described(checks, description)
        for checks in dg.build_time_partition_freshness_checks(
            assets=WAREHOUSE_ASSETS, deadline_cron=_cron(deadline), timezone=timezone
        )
    ]


FRESHNESS_CHECKS = build_freshness_checks(current_settings().freshness_deadline)

FRESHNESS_SENSOR = dg.build_sensor_for_freshness_checks(
    freshness_checks=FRESHNESS_CHECKS,
    minimum_interval_seconds=60,
    default_status=dg.DefaultSensorStatus.RUNNING,
)
