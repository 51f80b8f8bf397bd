-- The event ledger: every lifecycle event once (its id is the primary key, so a
-- redelivered or republished event changes nothing). seq orders arrival, for the
-- aggregation trigger.
CREATE TABLE IF NOT EXISTS events (
  seq         BIGINT UNSIGNED NOT NULL AUTO_INCREMENT,
  id          VARCHAR(160) NOT NULL,
  kind        VARCHAR(32)  NOT NULL,
  task_id     CHAR(36)     NOT NULL,
  task_type   VARCHAR(64)  NOT NULL,
  attempt     INT          NOT NULL,
  priority    VARCHAR(16)  NOT NULL DEFAULT '',
  worker      VARCHAR(200) NOT NULL DEFAULT '',
  event_time  DATETIME(6)  NOT NULL,
  received_at DATETIME(6)  NOT NULL DEFAULT CURRENT_TIMESTAMP(6),
  PRIMARY KEY (seq),
  UNIQUE KEY events_id (id),
  KEY events_task (task_id),
  KEY events_kind_time (kind, event_time)
);

-- One row per task, derived from its events by the trigger (recomputed from the ledger
-- for every task with new events, so it is exact however events arrive).
CREATE TABLE IF NOT EXISTS task_facts (
  task_id          CHAR(36)    NOT NULL,
  task_type        VARCHAR(64) NOT NULL,
  accepted_at      DATETIME(6) NULL,
  first_started_at DATETIME(6) NULL,
  completed_at     DATETIME(6) NULL,
  failed_at        DATETIME(6) NULL,
  starts           INT         NOT NULL,
  failed_attempts  INT         NOT NULL,
  PRIMARY KEY (task_id),
  KEY task_facts_completed (completed_at),
  KEY task_facts_type (task_type)
);

-- Tasks accepted and not yet started, sampled at every trigger.
CREATE TABLE IF NOT EXISTS pending_samples (
  sampled_at DATETIME(6) NOT NULL,
  pending    INT         NOT NULL,
  PRIMARY KEY (sampled_at)
);

-- Where the trigger got to in the ledger.
CREATE TABLE IF NOT EXISTS trigger_state (
  name     VARCHAR(32)     NOT NULL,
  last_seq BIGINT UNSIGNED NOT NULL,
  PRIMARY KEY (name)
);
INSERT IGNORE INTO trigger_state (name, last_seq) VALUES ('task_facts', 0);
