-- Run by the trigger for the hour windows whose percentiles are due, after the minutes:
-- merges the histograms of their minutes (window_hist, migration 006) and reads each
-- percentile off the merged one as PERCENTILE_CONT would off the times themselves (the
-- value at rank p·(n-1), interpolated between the ranks around it), taking the middle of
-- its bucket as each time's value: within 0.5 % of the exact percentile. It reads a few
-- hundred rows a minute of the hour, not the hour's tasks. An hour's percentiles cover the
-- minutes whose percentiles were recomputed (every minute, once it has ended; the running
-- one at most every PERCENTILES_EVERY). The trigger widens "d.window_start IN (?)" to one
-- placeholder per hour.
UPDATE window_stats w JOIN (
  SELECT hs, task_type,
    MAX(IF(metric = 0, p50, NULL)) AS wait_p50, MAX(IF(metric = 0, p95, NULL)) AS wait_p95,
    MAX(IF(metric = 1, p50, NULL)) AS run_p50, MAX(IF(metric = 1, p95, NULL)) AS run_p95,
    MAX(IF(metric = 2, p50, NULL)) AS e2e_p50, MAX(IF(metric = 2, p95, NULL)) AS e2e_p95
  FROM (
    SELECT hs, task_type, metric,
      MAX(IF(lo <= a50 AND a50 < lo + n, mid, NULL)) * (1 - MAX(f50)) + MAX(IF(lo <= b50 AND b50 < lo + n, mid, NULL)) * MAX(f50) AS p50,
      MAX(IF(lo <= a95 AND a95 < lo + n, mid, NULL)) * (1 - MAX(f95)) + MAX(IF(lo <= b95 AND b95 < lo + n, mid, NULL)) * MAX(f95) AS p95
    FROM (
      SELECT hs, task_type, metric, n, lo, IF(bucket = -1390, 0, POW(1.01, bucket + 0.5)) AS mid,
        FLOOR(0.5 * (total - 1)) AS a50, LEAST(FLOOR(0.5 * (total - 1)) + 1, total - 1) AS b50,
        0.5 * (total - 1) - FLOOR(0.5 * (total - 1)) AS f50,
        FLOOR(0.95 * (total - 1)) AS a95, LEAST(FLOOR(0.95 * (total - 1)) + 1, total - 1) AS b95,
        0.95 * (total - 1) - FLOOR(0.95 * (total - 1)) AS f95
      FROM (
        SELECT hs, task_type, metric, bucket, n,
          SUM(n) OVER (PARTITION BY hs, task_type, metric ORDER BY bucket) - n AS lo,
          SUM(n) OVER (PARTITION BY hs, task_type, metric) AS total
        FROM (
          SELECT d.window_start AS hs, h.task_type, h.metric, h.bucket, SUM(h.n) AS n
          FROM stats_dirty_percentiles d
          JOIN window_hist h ON h.window_start >= d.window_start AND h.window_start < d.window_start + INTERVAL 1 HOUR
          WHERE d.grain = 'hour' AND d.window_start IN (?)
          GROUP BY d.window_start, h.task_type, h.metric, h.bucket
        ) AS merged
      ) AS ranked
    ) AS placed
    GROUP BY hs, task_type, metric
  ) AS per_metric
  GROUP BY hs, task_type
) AS p ON w.grain = 'hour' AND w.window_start = p.hs AND w.task_type = p.task_type
SET w.wait_p50 = p.wait_p50, w.wait_p95 = p.wait_p95, w.run_p50 = p.run_p50, w.run_p95 = p.run_p95,
  w.e2e_p50 = p.e2e_p50, w.e2e_p95 = p.e2e_p95;
