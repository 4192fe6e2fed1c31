"""Typed events -> per-SIM and per-group daily cost, summed in DuckDB as DECIMAL."""

from __future__ import annotations

from nova_pipeline.transforms.events import PULLS_CTE
from nova_pipeline.warehouse import EVENT_TYPES

_PER_TYPE = ",\n    ".join(
    f"count(*) FILTER (WHERE type = '{t}') AS {t}_count,\n"
    f"    coalesce(sum(cost_eur) FILTER (WHERE type = '{t}'), 0) AS {t}_cost_eur"
    for t in EVENT_TYPES
)
_SUM_PER_TYPE = ",\n    ".join(
    f"coalesce(sum(s.{t}_count), 0) AS {t}_count,\n"
    f"    coalesce(sum(s.{t}_cost_eur), 0) AS {t}_cost_eur"
    for t in EVENT_TYPES
)

SIM_DAILY_COST_SQL = f"""
WITH sums AS (
    SELECT
        day, sim_id,
        arg_max(rowid, occurred_at) AS latest,
        {_PER_TYPE},
        count(*) AS events,
        sum(cost_eur) AS cost_eur
    FROM call_sms_events
    WHERE day BETWEEN $start AND $end
    GROUP BY day, sim_id
)
SELECT s.day, s.sim_id, e.sim_number, e.iccid, e.sim_name, s.* EXCLUDE (day, sim_id, latest)
FROM sums s JOIN call_sms_events e ON e.rowid = s.latest
WHERE e.day BETWEEN $start AND $end
"""
"""The rows of sim_daily_cost for the days $start..$end. The SIM's number, ICCID and name
are those of its latest event that day: the sums pick that event's row id, and only those
rows are looked up for the text, in the run's days (keeping three strings per SIM in the
aggregate instead took 0.1 s more on a million events)."""

GROUP_DAILY_COST_SQL = f"""
WITH days AS (
    SELECT DISTINCT day FROM sim_daily_cost WHERE day BETWEEN $start AND $end
),
{PULLS_CTE},
buckets AS (
    SELECT d.day, g.group_id, g.group_name FROM days d CROSS JOIN group_names g
    WHERE EXISTS (SELECT 1 FROM pulls p WHERE p.day = d.day AND p.selector = 'g_' || g.group_id)
       OR NOT EXISTS (SELECT 1 FROM pulls p WHERE p.day = d.day AND p.ends)
    UNION ALL
    SELECT day, NULL, 'ungrouped' FROM days
),
configured AS (
    SELECT m.* FROM sim_group_membership m SEMI JOIN group_names g USING (group_id)
    WHERE m.day BETWEEN $start AND $end
),
assigned AS (
    SELECT s.day, m.group_id, s.sim_id
    FROM sim_daily_cost s JOIN configured m USING (day, sim_id)
    WHERE s.day BETWEEN $start AND $end
    UNION ALL
    SELECT s.day, NULL, s.sim_id
    FROM sim_daily_cost s
    WHERE s.day BETWEEN $start AND $end
      AND NOT EXISTS (SELECT 1 FROM configured m WHERE m.day = s.day AND m.sim_id = s.sim_id)
)
SELECT
    b.day, b.group_id, b.group_name,
    count(s.sim_id) AS active_sims,
    {_SUM_PER_TYPE},
    coalesce(sum(s.events), 0) AS events,
    coalesce(sum(s.cost_eur), 0) AS cost_eur
FROM buckets b
LEFT JOIN assigned a ON a.day = b.day AND a.group_id IS NOT DISTINCT FROM b.group_id
LEFT JOIN sim_daily_cost s ON s.day = a.day AND s.sim_id = a.sim_id
GROUP BY b.day, b.group_id, b.group_name
"""
"""The rows of group_daily_cost for the days $start..$end: every configured group pulled
that day (zero when idle), plus the SIMs of no such group as 'ungrouped': with disjoint
groups the rows of a day add up to the account's total. Which groups were pulled is read
from the raw index, where each pull leaves at least its closing empty page; a day indexed
before that page was kept (no page without items) gives every configured group a row, as
it did then. A group added to NOVA_GROUPS since a day was pulled, or dropped from it, has
no row that day (its group costs re-run alone), and its SIMs count as 'ungrouped'."""

TOP_SIMS_SQL = """
WITH top AS (
    SELECT sim_id, sum(events) AS events, sum(cost_eur) AS cost, max(day) AS last_day
    FROM sim_daily_cost WHERE day BETWEEN ? AND ?
    GROUP BY sim_id ORDER BY cost DESC, sim_id LIMIT 10
)
SELECT t.sim_id, s.sim_name, s.iccid, t.events, t.cost
FROM top t JOIN sim_daily_cost s ON s.sim_id = t.sim_id AND s.day = t.last_day
ORDER BY t.cost DESC, t.sim_id
"""
"""The ten SIMs that cost most over a range of days (the sim_daily_cost run's metadata,
the demo's second table), each with its name and ICCID as of its last day in the range:
both from one row, so a SIM renamed or given a new card mid-range shows its latest pair."""

GROUP_TOTALS_SQL = """
SELECT group_id, group_name, max(active_sims), sum(events), sum(cost_eur)
FROM group_daily_cost WHERE day BETWEEN ? AND ?
GROUP BY group_id, group_name ORDER BY group_id NULLS LAST
"""
"""Per group over a range of days: the most SIMs active on any one day, events and euro
('ungrouped' last; the group_daily_cost run's metadata, the demo's first table)."""

ACCOUNT_TOTALS_SQL = """
SELECT coalesce(sum(events), 0), coalesce(sum(cost_eur), 0)
FROM sim_daily_cost WHERE day BETWEEN ? AND ?
"""
"""Events and euro of the whole account over a range of days, each SIM counted once: the
demo's total row, which the group rows exceed when the pulls put a SIM in two groups."""
