-- Run by the trigger for the windows whose percentiles are due (see migration 005):
-- recomputes them from the facts of the tasks that completed in them. One statement per
-- grain, minutes first: the trigger fills in {grain} (minute, hour) and {unit} (MINUTE,
-- HOUR), and widens "d.window_start IN (?)" to one placeholder per window.

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
    JOIN task_facts t ON t.completed_at >= d.window_start AND t.completed_at < d.window_start + INTERVAL 1 {unit}
    WHERE d.grain = '{grain}' AND d.window_start IN (?)
      AND t.accepted_at IS NOT NULL AND t.first_started_at IS NOT NULL AND t.last_started_at IS NOT NULL
  ) AS v
) AS p ON w.grain = '{grain}' AND w.window_start = p.ws AND w.task_type = p.task_type
SET w.wait_p50 = p.wait_p50, w.wait_p95 = p.wait_p95, w.run_p50 = p.run_p50, w.run_p95 = p.run_p95,
  w.e2e_p50 = p.e2e_p50, w.e2e_p95 = p.e2e_p95;
