-- Average number of starts (attempts) per task that started, overall and by type.
SELECT COALESCE(task_type, 'all') AS task_type, AVG(starts) AS avg_starts, SUM(starts - 1) AS retries, COUNT(*) AS tasks
FROM task_facts WHERE starts > 0 GROUP BY task_type WITH ROLLUP;
