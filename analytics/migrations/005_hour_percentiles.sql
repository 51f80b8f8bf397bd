-- Hours whose percentiles must be recomputed, and since when. An hour's percentiles are
-- computed from the facts of every task that completed in it: at a sustained 500 tasks/s
-- that is a sort of up to 1.8 million rows, too much for every trigger. The trigger marks
-- the hours its minutes roll up into, and recomputes an hour's percentiles once it has
-- ended, and while it runs at most every HOUR_PERCENTILES_EVERY (one minute); its counts,
-- sums and maxima stay exact at every trigger.
CREATE TABLE IF NOT EXISTS stats_dirty_hours (
  hour  DATETIME    NOT NULL PRIMARY KEY,
  since DATETIME(6) NOT NULL
);
