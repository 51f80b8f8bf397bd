-- Statistics per time window and task type, kept up to date by the trigger: minute rows
-- are recomputed from task_facts for every minute a changed task touches (before and
-- after its change), and hour, day, week and month rows are rolled up from them. The
-- rows are recomputed, never incremented, so they are exact however events arrive.
--
-- Counts are by the time of their own event: accepted (accepted_at), started (the
-- first start), completed, failed (for good). finished_starts and retries are the
-- attempts started and failed by the tasks that completed or failed in the window
-- (finished_starts / (completed + failed) is the average starts per task). Durations,
-- in seconds, are of the tasks completed in the window (timed of them have all times):
-- wait is accepted to first start, run is last start to completion, e2e is accepted
-- to completion. p50 and p95 are kept for minute and hour windows; for longer windows
-- read them with analytics/queries/durations_per_hour.sql-style queries on task_facts.
CREATE TABLE IF NOT EXISTS window_stats (
  grain           VARCHAR(6)  NOT NULL,
  window_start    DATETIME    NOT NULL,
  task_type       VARCHAR(64) NOT NULL,
  accepted        INT         NOT NULL DEFAULT 0,
  started         INT         NOT NULL DEFAULT 0,
  completed       INT         NOT NULL DEFAULT 0,
  failed          INT         NOT NULL DEFAULT 0,
  finished_starts INT         NOT NULL DEFAULT 0,
  retries         INT         NOT NULL DEFAULT 0,
  timed           INT         NOT NULL DEFAULT 0,
  wait_sum        DOUBLE      NULL,
  wait_max        DOUBLE      NULL,
  wait_p50        DOUBLE      NULL,
  wait_p95        DOUBLE      NULL,
  run_sum         DOUBLE      NULL,
  run_max         DOUBLE      NULL,
  run_p50         DOUBLE      NULL,
  run_p95         DOUBLE      NULL,
  e2e_sum         DOUBLE      NULL,
  e2e_max         DOUBLE      NULL,
  e2e_p50         DOUBLE      NULL,
  e2e_p95         DOUBLE      NULL,
  PRIMARY KEY (grain, window_start, task_type)
);

-- Minutes whose statistics must be recomputed (kept across a crash of the trigger).
CREATE TABLE IF NOT EXISTS stats_dirty (
  minute DATETIME NOT NULL,
  PRIMARY KEY (minute)
);

CREATE INDEX IF NOT EXISTS task_facts_accepted ON task_facts (accepted_at);
CREATE INDEX IF NOT EXISTS task_facts_first_started ON task_facts (first_started_at);
CREATE INDEX IF NOT EXISTS task_facts_failed ON task_facts (failed_at);

-- Every minute with a task in it is dirty once, so the first trigger fills the table.
INSERT IGNORE INTO stats_dirty (minute)
SELECT DISTINCT DATE_FORMAT(CASE k.n WHEN 1 THEN f.accepted_at WHEN 2 THEN f.first_started_at WHEN 3 THEN f.completed_at ELSE f.failed_at END, '%Y-%m-%d %H:%i:00') AS m
FROM task_facts f JOIN (SELECT 1 AS n UNION ALL SELECT 2 UNION ALL SELECT 3 UNION ALL SELECT 4) AS k
HAVING m IS NOT NULL;
