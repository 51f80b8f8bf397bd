-- Run by the trigger before and after facts.sql, for the same ledger range (seq > ? AND
-- seq <= ?): records the minutes that the facts of the range's tasks fall in (accepted,
-- first start, completion, failure, cancel) as needing their statistics recomputed.
-- Before: the windows a task leaves; after: those it enters. Like facts.sql, it reads the
-- range's tasks first and each one's facts by primary key (STRAIGHT_JOIN, FORCE INDEX), so
-- it costs what the range touches, not the size of task_facts.
INSERT IGNORE INTO stats_dirty (minute)
SELECT DISTINCT DATE_FORMAT(CASE k.n WHEN 1 THEN f.accepted_at WHEN 2 THEN f.first_started_at WHEN 3 THEN f.completed_at WHEN 4 THEN f.failed_at ELSE f.cancelled_at END, '%Y-%m-%d %H:%i:00') AS m
FROM (SELECT DISTINCT task_id FROM events WHERE seq > ? AND seq <= ?) AS touched
STRAIGHT_JOIN task_facts f FORCE INDEX (PRIMARY) ON f.task_id = touched.task_id
STRAIGHT_JOIN (SELECT 1 AS n UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4 UNION ALL SELECT 5) AS k
HAVING m IS NOT NULL;
