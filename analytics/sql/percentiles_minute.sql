-- Run by the trigger for the minute windows whose percentiles are due (see migrations 005
-- and 006), before the hours: recomputes them from the facts of the tasks that completed
-- in them, exactly, and writes their histograms, which their hours' percentiles are merged
-- from (percentiles_hour.sql); then marks those hours, so that an hour recomputed before
-- one of its minutes was is recomputed again. The trigger widens "d.window_start IN (?)"
-- (and "window_start IN (?)") to one placeholder per minute, in each statement.

UPDATE window_stats w JOIN (
  SELECT DISTINCT ws, task_type,
    PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY wt) OVER (PARTITION BY ws, task_type) AS wait_p50,
    PERCENTILE_CONT(0.95) WITHIN GROUP (ORDER BY wt) OVER (PARTITION BY ws, task_type) AS wait_p95,
    PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY rn) OVER (PARTITION BY ws, task_type) AS run_p50,
    PERCENTILE_CONT(0.95) WITHIN GROUP (ORDER BY rn) OVER (PARTITION BY ws, task_type) AS run_p95,
    PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY ee) OVER (PARTITION BY ws, task_type) AS e2e_p50,
    PERCENTILE_CONT(0.95) WITHIN GROUP (ORDER BY ee) OVER (PARTITION BY ws, task_type) AS e2e_p95
  FROM (
    SELECT d.window_start AS ws, t.task_type,
      TIMESTAMPDIFF(MICROSECOND, t.accepted_at, t.first_started_at) / 1e6 AS wt,
      TIMESTAMPDIFF(MICROSECOND, t.last_started_at, t.completed_at) / 1e6 AS rn,
      TIMESTAMPDIFF(MICROSECOND, t.accepted_at, t.completed_at) / 1e6 AS ee
    FROM stats_dirty_percentiles d
    JOIN task_facts t ON t.completed_at >= d.window_start AND t.completed_at < d.window_start + INTERVAL 1 MINUTE
    WHERE d.grain = 'minute' AND d.window_start IN (?)
      AND t.accepted_at IS NOT NULL AND t.first_started_at IS NOT NULL AND t.last_started_at IS NOT NULL
  ) AS v
) AS p ON w.grain = 'minute' AND w.window_start = p.ws AND w.task_type = p.task_type
SET w.wait_p50 = p.wait_p50, w.wait_p95 = p.wait_p95, w.run_p50 = p.run_p50, w.run_p95 = p.run_p95,
  w.e2e_p50 = p.e2e_p50, w.e2e_p95 = p.e2e_p95;

DELETE FROM window_hist WHERE window_start IN (?);

-- The bucket of a time of us microseconds, as migration 006 defines it.
INSERT INTO window_hist (window_start, task_type, metric, bucket, n)
SELECT ws, task_type, metric, IF(us < 1, -1390, FLOOR(LN(us / 1e6) / LN(1.01))) AS bucket, COUNT(*)
FROM (
  SELECT d.window_start AS ws, t.task_type, k.metric,
    CASE k.metric WHEN 0 THEN TIMESTAMPDIFF(MICROSECOND, t.accepted_at, t.first_started_at)
      WHEN 1 THEN TIMESTAMPDIFF(MICROSECOND, t.last_started_at, t.completed_at)
      ELSE TIMESTAMPDIFF(MICROSECOND, t.accepted_at, t.completed_at) END AS us
  FROM stats_dirty_percentiles d
  JOIN task_facts t ON t.completed_at >= d.window_start AND t.completed_at < d.window_start + INTERVAL 1 MINUTE
  JOIN (SELECT 0 AS metric UNION ALL SELECT 1 UNION ALL SELECT 2) AS k
  WHERE d.grain = 'minute' AND d.window_start IN (?)
    AND t.accepted_at IS NOT NULL AND t.first_started_at IS NOT NULL AND t.last_started_at IS NOT NULL
) AS v
GROUP BY ws, task_type, metric, bucket;

INSERT IGNORE INTO stats_dirty_percentiles (grain, window_start, since)
SELECT DISTINCT 'hour', CAST(DATE_FORMAT(window_start, '%Y-%m-%d %H:00:00') AS DATETIME), UTC_TIMESTAMP(6)
FROM stats_dirty_percentiles WHERE grain = 'minute' AND window_start IN (?);
