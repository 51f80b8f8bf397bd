-- Tasks cancelled by their users (DELETE /api/v1/tasks/{id}): when, per task, and how
-- many per window (counted in the window of the cancel, like completed and failed).
ALTER TABLE task_facts ADD COLUMN IF NOT EXISTS cancelled_at DATETIME(6) NULL AFTER failed_at;
ALTER TABLE window_stats ADD COLUMN IF NOT EXISTS cancelled INT NOT NULL DEFAULT 0 AFTER failed;
CREATE INDEX IF NOT EXISTS task_facts_cancelled ON task_facts (cancelled_at);
