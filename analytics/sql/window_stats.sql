-- Run by the trigger after task_facts changed: recomputes the statistics of the dirty
-- minutes from task_facts, rolls them up into the hours, days, weeks and months they
-- belong to, then forgets the dirty minutes. Each statement only reads and writes the
-- windows of dirty minutes; all of it may run again with the same result.

-- Minutes, from the facts: counts, sums and maxima. Their percentiles are kept
-- (percentiles_minute.sql recomputes them, once the minute has ended): the dirty minutes' rows
-- are zeroed, set from the facts, and those left with no task at all removed.
INSERT IGNORE INTO stats_dirty_percentiles (grain, window_start, since)
SELECT 'minute', minute, UTC_TIMESTAMP(6) FROM stats_dirty;

UPDATE window_stats w JOIN stats_dirty d ON w.grain = 'minute' AND w.window_start = d.minute
SET w.accepted = 0, w.started = 0, w.completed = 0, w.failed = 0, w.cancelled = 0, w.finished_starts = 0,
  w.retries = 0, w.timed = 0, w.wait_sum = NULL, w.wait_max = NULL, w.run_sum = NULL, w.run_max = NULL,
  w.e2e_sum = NULL, w.e2e_max = NULL;

INSERT INTO window_stats (grain, window_start, task_type, accepted, started, completed, failed, cancelled,
  finished_starts, retries, timed, wait_sum, wait_max, run_sum, run_max, e2e_sum, e2e_max)
SELECT 'minute', m, task_type, SUM(a), SUM(s), SUM(c), SUM(f), SUM(cx), SUM(st), SUM(r), SUM(tm),
  SUM(wt), MAX(wt), SUM(rn), MAX(rn), SUM(ee), MAX(ee)
FROM (
  SELECT d.minute AS m, t.task_type, 1 AS a, 0 AS s, 0 AS c, 0 AS f, 0 AS cx, 0 AS st, 0 AS r, 0 AS tm,
    NULL AS wt, NULL AS rn, NULL AS ee
  FROM stats_dirty d JOIN task_facts t ON t.accepted_at >= d.minute AND t.accepted_at < d.minute + INTERVAL 1 MINUTE
  UNION ALL
  SELECT d.minute, t.task_type, 0, 1, 0, 0, 0, 0, 0, 0, NULL, NULL, NULL
  FROM stats_dirty d JOIN task_facts t ON t.first_started_at >= d.minute AND t.first_started_at < d.minute + INTERVAL 1 MINUTE
  UNION ALL
  SELECT d.minute, t.task_type, 0, 0, 1, 0, 0, t.starts, t.failed_attempts,
    t.accepted_at IS NOT NULL AND t.first_started_at IS NOT NULL AND t.last_started_at IS NOT NULL,
    IF(t.accepted_at IS NULL OR t.first_started_at IS NULL OR t.last_started_at IS NULL, NULL, TIMESTAMPDIFF(MICROSECOND, t.accepted_at, t.first_started_at) / 1e6),
    IF(t.accepted_at IS NULL OR t.first_started_at IS NULL OR t.last_started_at IS NULL, NULL, TIMESTAMPDIFF(MICROSECOND, t.last_started_at, t.completed_at) / 1e6),
    IF(t.accepted_at IS NULL OR t.first_started_at IS NULL OR t.last_started_at IS NULL, NULL, TIMESTAMPDIFF(MICROSECOND, t.accepted_at, t.completed_at) / 1e6)
  FROM stats_dirty d JOIN task_facts t ON t.completed_at >= d.minute AND t.completed_at < d.minute + INTERVAL 1 MINUTE
  UNION ALL
  SELECT d.minute, t.task_type, 0, 0, 0, 1, 0, t.starts, t.failed_attempts, 0, NULL, NULL, NULL
  FROM stats_dirty d JOIN task_facts t ON t.failed_at >= d.minute AND t.failed_at < d.minute + INTERVAL 1 MINUTE
  UNION ALL
  SELECT d.minute, t.task_type, 0, 0, 0, 0, 1, 0, 0, 0, NULL, NULL, NULL
  FROM stats_dirty d JOIN task_facts t ON t.cancelled_at >= d.minute AND t.cancelled_at < d.minute + INTERVAL 1 MINUTE
) AS x
GROUP BY m, task_type
ON DUPLICATE KEY UPDATE accepted = VALUES(accepted), started = VALUES(started), completed = VALUES(completed),
  failed = VALUES(failed), cancelled = VALUES(cancelled), finished_starts = VALUES(finished_starts),
  retries = VALUES(retries), timed = VALUES(timed), wait_sum = VALUES(wait_sum), wait_max = VALUES(wait_max),
  run_sum = VALUES(run_sum), run_max = VALUES(run_max), e2e_sum = VALUES(e2e_sum), e2e_max = VALUES(e2e_max);

DELETE w FROM window_stats w JOIN stats_dirty d ON w.grain = 'minute' AND w.window_start = d.minute
WHERE w.accepted = 0 AND w.started = 0 AND w.completed = 0 AND w.failed = 0 AND w.cancelled = 0;

-- Hours, rolled up from their minutes: counts, sums and maxima. Their percentiles are kept
-- (percentiles_hour.sql merges them from the minutes' histograms, less often): the dirty hours' rows are zeroed,
-- set from their minutes, and those left with no task at all removed.
INSERT IGNORE INTO stats_dirty_percentiles (grain, window_start, since)
SELECT DISTINCT 'hour', CAST(DATE_FORMAT(minute, '%Y-%m-%d %H:00:00') AS DATETIME), UTC_TIMESTAMP(6) FROM stats_dirty;

UPDATE window_stats w
JOIN (SELECT DISTINCT CAST(DATE_FORMAT(minute, '%Y-%m-%d %H:00:00') AS DATETIME) AS h FROM stats_dirty) AS d
  ON w.grain = 'hour' AND w.window_start = d.h
SET w.accepted = 0, w.started = 0, w.completed = 0, w.failed = 0, w.cancelled = 0, w.finished_starts = 0,
  w.retries = 0, w.timed = 0, w.wait_sum = NULL, w.wait_max = NULL, w.run_sum = NULL, w.run_max = NULL,
  w.e2e_sum = NULL, w.e2e_max = NULL;

INSERT INTO window_stats (grain, window_start, task_type, accepted, started, completed, failed, cancelled,
  finished_starts, retries, timed, wait_sum, wait_max, run_sum, run_max, e2e_sum, e2e_max)
SELECT 'hour', d.h, w.task_type, SUM(w.accepted), SUM(w.started), SUM(w.completed), SUM(w.failed), SUM(w.cancelled),
  SUM(w.finished_starts), SUM(w.retries), SUM(w.timed), SUM(w.wait_sum), MAX(w.wait_max),
  SUM(w.run_sum), MAX(w.run_max), SUM(w.e2e_sum), MAX(w.e2e_max)
FROM (SELECT DISTINCT CAST(DATE_FORMAT(minute, '%Y-%m-%d %H:00:00') AS DATETIME) AS h FROM stats_dirty) AS d
JOIN window_stats w ON w.grain = 'minute' AND w.window_start >= d.h AND w.window_start < d.h + INTERVAL 1 HOUR
GROUP BY d.h, w.task_type
ON DUPLICATE KEY UPDATE accepted = VALUES(accepted), started = VALUES(started), completed = VALUES(completed),
  failed = VALUES(failed), cancelled = VALUES(cancelled), finished_starts = VALUES(finished_starts),
  retries = VALUES(retries), timed = VALUES(timed), wait_sum = VALUES(wait_sum), wait_max = VALUES(wait_max),
  run_sum = VALUES(run_sum), run_max = VALUES(run_max), e2e_sum = VALUES(e2e_sum), e2e_max = VALUES(e2e_max);

DELETE w FROM window_stats w
JOIN (SELECT DISTINCT CAST(DATE_FORMAT(minute, '%Y-%m-%d %H:00:00') AS DATETIME) AS h FROM stats_dirty) AS d
  ON w.grain = 'hour' AND w.window_start = d.h
WHERE w.accepted = 0 AND w.started = 0 AND w.completed = 0 AND w.failed = 0 AND w.cancelled = 0;

-- Days from their hours.
DELETE w FROM window_stats w
JOIN (SELECT DISTINCT DATE(minute) AS s FROM stats_dirty) AS d ON w.grain = 'day' AND w.window_start = d.s;

INSERT INTO window_stats (grain, window_start, task_type, accepted, started, completed, failed, cancelled,
  finished_starts, retries, timed, wait_sum, wait_max, run_sum, run_max, e2e_sum, e2e_max)
SELECT 'day', d.s, w.task_type, SUM(w.accepted), SUM(w.started), SUM(w.completed), SUM(w.failed), SUM(w.cancelled),
  SUM(w.finished_starts), SUM(w.retries), SUM(w.timed), SUM(w.wait_sum), MAX(w.wait_max),
  SUM(w.run_sum), MAX(w.run_max), SUM(w.e2e_sum), MAX(w.e2e_max)
FROM (SELECT DISTINCT CAST(DATE(minute) AS DATETIME) AS s FROM stats_dirty) AS d
JOIN window_stats w ON w.grain = 'hour' AND w.window_start >= d.s AND w.window_start < d.s + INTERVAL 1 DAY
GROUP BY d.s, w.task_type;

-- Weeks (from Monday) from their days.
DELETE w FROM window_stats w
JOIN (SELECT DISTINCT DATE(minute) - INTERVAL WEEKDAY(minute) DAY AS s FROM stats_dirty) AS d ON w.grain = 'week' AND w.window_start = d.s;

INSERT INTO window_stats (grain, window_start, task_type, accepted, started, completed, failed, cancelled,
  finished_starts, retries, timed, wait_sum, wait_max, run_sum, run_max, e2e_sum, e2e_max)
SELECT 'week', d.s, w.task_type, SUM(w.accepted), SUM(w.started), SUM(w.completed), SUM(w.failed), SUM(w.cancelled),
  SUM(w.finished_starts), SUM(w.retries), SUM(w.timed), SUM(w.wait_sum), MAX(w.wait_max),
  SUM(w.run_sum), MAX(w.run_max), SUM(w.e2e_sum), MAX(w.e2e_max)
FROM (SELECT DISTINCT CAST(DATE(minute) - INTERVAL WEEKDAY(minute) DAY AS DATETIME) AS s FROM stats_dirty) AS d
JOIN window_stats w ON w.grain = 'day' AND w.window_start >= d.s AND w.window_start < d.s + INTERVAL 7 DAY
GROUP BY d.s, w.task_type;

-- Months from their days.
DELETE w FROM window_stats w
JOIN (SELECT DISTINCT DATE_FORMAT(minute, '%Y-%m-01') AS s FROM stats_dirty) AS d ON w.grain = 'month' AND w.window_start = d.s;

INSERT INTO window_stats (grain, window_start, task_type, accepted, started, completed, failed, cancelled,
  finished_starts, retries, timed, wait_sum, wait_max, run_sum, run_max, e2e_sum, e2e_max)
SELECT 'month', d.s, w.task_type, SUM(w.accepted), SUM(w.started), SUM(w.completed), SUM(w.failed), SUM(w.cancelled),
  SUM(w.finished_starts), SUM(w.retries), SUM(w.timed), SUM(w.wait_sum), MAX(w.wait_max),
  SUM(w.run_sum), MAX(w.run_max), SUM(w.e2e_sum), MAX(w.e2e_max)
FROM (SELECT DISTINCT CAST(DATE_FORMAT(minute, '%Y-%m-01') AS DATETIME) AS s FROM stats_dirty) AS d
JOIN window_stats w ON w.grain = 'day' AND w.window_start >= d.s AND w.window_start < d.s + INTERVAL 1 MONTH
GROUP BY d.s, w.task_type;

DELETE FROM stats_dirty;
