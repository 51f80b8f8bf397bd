-- Minute and hour windows whose percentiles must be recomputed, and since when. A
-- window's percentiles come from the facts of every task that completed in it: a sort
-- that grows with the window (30,000 tasks a minute and 1.8 million an hour at a sustained
-- 500 tasks/s), too much for every trigger while the window fills. The trigger marks the
-- windows of its dirty minutes and recomputes their percentiles once they have ended, and
-- a running one at most every PERCENTILES_EVERY (one minute): a minute's then once,
-- just after it ends. Counts, sums and maxima stay exact at every trigger.
CREATE TABLE IF NOT EXISTS stats_dirty_percentiles (
  grain        VARCHAR(6)  NOT NULL,
  window_start DATETIME    NOT NULL,
  since        DATETIME(6) NOT NULL,
  PRIMARY KEY (grain, window_start)
);
