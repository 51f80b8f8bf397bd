-- The histograms an hour's percentiles are read from. An hour's percentiles, sorted from
-- the facts of every task completed in it, cost a sort of the whole hour each time they
-- were recomputed: 2.9 s of MariaDB's CPU two minutes into a run at 500 tasks/s, and
-- growing with the hour (1.8 million tasks at its end), every PERCENTILES_EVERY. A
-- minute's histogram is written with its percentiles (analytics/sql/percentiles_minute.sql),
-- once the minute has ended; an hour's percentiles are merged from its minutes'
-- (percentiles_hour.sql): a few hundred rows a minute, whatever the rate.
--
-- Per minute window, task type and duration (metric 0: queue wait, 1: run time, 2:
-- end to end) of the tasks completed in it: how many took a time in each bucket. Bucket b
-- holds [1.01^b, 1.01^(b+1)) seconds (a microsecond is bucket -1389); a time under a
-- microsecond (0, or less where clocks disagree) is bucket -1390, read as 0.
CREATE TABLE IF NOT EXISTS window_hist (
  window_start DATETIME    NOT NULL,
  task_type    VARCHAR(64) NOT NULL,
  metric       TINYINT     NOT NULL,
  bucket       SMALLINT    NOT NULL,
  n            INT         NOT NULL,
  PRIMARY KEY (window_start, task_type, metric, bucket)
);

-- The minutes stored before this: their histograms from their facts, once.
INSERT IGNORE INTO window_hist (window_start, task_type, metric, bucket, n)
SELECT ws, task_type, metric, IF(us < 1, -1390, FLOOR(LN(us / 1e6) / LN(1.01))) AS bucket, COUNT(*)
FROM (
  SELECT CAST(DATE_FORMAT(t.completed_at, '%Y-%m-%d %H:%i:00') AS DATETIME) AS ws, t.task_type, k.metric,
    CASE k.metric WHEN 0 THEN TIMESTAMPDIFF(MICROSECOND, t.accepted_at, t.first_started_at)
      WHEN 1 THEN TIMESTAMPDIFF(MICROSECOND, t.last_started_at, t.completed_at)
      ELSE TIMESTAMPDIFF(MICROSECOND, t.accepted_at, t.completed_at) END AS us
  FROM task_facts t
  JOIN (SELECT 0 AS metric UNION ALL SELECT 1 UNION ALL SELECT 2) AS k
  WHERE t.completed_at IS NOT NULL AND t.accepted_at IS NOT NULL AND t.first_started_at IS NOT NULL
    AND t.last_started_at IS NOT NULL
) AS v
GROUP BY ws, task_type, metric, bucket;
