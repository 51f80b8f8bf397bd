-- The stored statistics (window_stats, kept by the trigger): per grain (minute, hour,
-- day, week, month), window and task type, the counts, average starts per finished
-- task, and queue wait / run / end-to-end time in seconds (mean and max; p50 and p95 for
-- minute and hour windows). Change the grain to read another one.
SELECT grain, window_start, task_type, accepted, started, completed, failed, retries,
  finished_starts / NULLIF(completed + failed, 0) AS avg_starts,
  wait_sum / NULLIF(timed, 0) AS wait_mean, wait_p50, wait_p95, wait_max,
  run_sum / NULLIF(timed, 0) AS run_mean, run_p50, run_p95, run_max,
  e2e_sum / NULLIF(timed, 0) AS e2e_mean, e2e_p50, e2e_p95, e2e_max
FROM window_stats WHERE grain = 'hour' ORDER BY window_start, task_type;
