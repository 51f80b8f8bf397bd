-- Per task type and hour of completion: queue wait (accepted to first start), run time
-- (last start to completion) and end-to-end time (accepted to completion), in seconds:
-- mean, p50, p95 and max.
SELECT task_type, hour, COUNT(*) AS completed,
  AVG(wait) AS wait_mean, MAX(wait_p50) AS wait_p50, MAX(wait_p95) AS wait_p95, MAX(wait) AS wait_max,
  AVG(run) AS run_mean, MAX(run_p50) AS run_p50, MAX(run_p95) AS run_p95, MAX(run) AS run_max,
  AVG(e2e) AS e2e_mean, MAX(e2e_p50) AS e2e_p50, MAX(e2e_p95) AS e2e_p95, MAX(e2e) AS e2e_max
FROM (
  SELECT task_type, hour, wait, run, e2e,
    PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY wait) OVER (PARTITION BY task_type, hour) AS wait_p50,
    PERCENTILE_CONT(0.95) WITHIN GROUP (ORDER BY wait) OVER (PARTITION BY task_type, hour) AS wait_p95,
    PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY run) OVER (PARTITION BY task_type, hour) AS run_p50,
    PERCENTILE_CONT(0.95) WITHIN GROUP (ORDER BY run) OVER (PARTITION BY task_type, hour) AS run_p95,
    PERCENTILE_CONT(0.5) WITHIN GROUP (ORDER BY e2e) OVER (PARTITION BY task_type, hour) AS e2e_p50,
    PERCENTILE_CONT(0.95) WITHIN GROUP (ORDER BY e2e) OVER (PARTITION BY task_type, hour) AS e2e_p95
  FROM (
    SELECT task_type, DATE_FORMAT(completed_at, '%Y-%m-%d %H:00') AS hour,
      TIMESTAMPDIFF(MICROSECOND, accepted_at, first_started_at) / 1e6 AS wait,
      TIMESTAMPDIFF(MICROSECOND, last_started_at, completed_at) / 1e6 AS run,
      TIMESTAMPDIFF(MICROSECOND, accepted_at, completed_at) / 1e6 AS e2e
    FROM task_facts WHERE completed_at IS NOT NULL AND accepted_at IS NOT NULL AND first_started_at IS NOT NULL
  ) AS d
) AS p
GROUP BY task_type, hour ORDER BY hour, task_type;
