-- Per task type and hour: tasks accepted, started (first start), completed and failed in
-- that hour, and throughput (completed per minute).
SELECT task_type, hour,
  SUM(what = 'accepted') AS accepted, SUM(what = 'started') AS started,
  SUM(what = 'completed') AS completed, SUM(what = 'failed') AS failed,
  SUM(what = 'completed') / 60 AS completed_per_minute
FROM (
  SELECT task_type, DATE_FORMAT(accepted_at, '%Y-%m-%d %H:00') AS hour, 'accepted' AS what FROM task_facts WHERE accepted_at IS NOT NULL
  UNION ALL SELECT task_type, DATE_FORMAT(first_started_at, '%Y-%m-%d %H:00'), 'started' FROM task_facts WHERE first_started_at IS NOT NULL
  UNION ALL SELECT task_type, DATE_FORMAT(completed_at, '%Y-%m-%d %H:00'), 'completed' FROM task_facts WHERE completed_at IS NOT NULL
  UNION ALL SELECT task_type, DATE_FORMAT(failed_at, '%Y-%m-%d %H:00'), 'failed' FROM task_facts WHERE failed_at IS NOT NULL
) AS steps
GROUP BY task_type, hour ORDER BY hour, task_type;
