-- Completed tasks per minute, hour, day, week (from Monday) and month, by task type.
SELECT 'minute' AS grain, DATE_FORMAT(completed_at, '%Y-%m-%d %H:%i') AS window_start, task_type, COUNT(*) AS completed
FROM task_facts WHERE completed_at IS NOT NULL GROUP BY 2, 3
UNION ALL
SELECT 'hour', DATE_FORMAT(completed_at, '%Y-%m-%d %H:00'), task_type, COUNT(*)
FROM task_facts WHERE completed_at IS NOT NULL GROUP BY 2, 3
UNION ALL
SELECT 'day', DATE_FORMAT(completed_at, '%Y-%m-%d'), task_type, COUNT(*)
FROM task_facts WHERE completed_at IS NOT NULL GROUP BY 2, 3
UNION ALL
SELECT 'week', DATE_FORMAT(DATE(completed_at) - INTERVAL WEEKDAY(completed_at) DAY, '%Y-%m-%d'), task_type, COUNT(*)
FROM task_facts WHERE completed_at IS NOT NULL GROUP BY 2, 3
UNION ALL
SELECT 'month', DATE_FORMAT(completed_at, '%Y-%m'), task_type, COUNT(*)
FROM task_facts WHERE completed_at IS NOT NULL GROUP BY 2, 3
ORDER BY 1, 2, 3;
