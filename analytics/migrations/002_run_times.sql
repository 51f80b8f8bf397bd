-- The start of a task's last attempt: with completed_at it gives the run time of the
-- attempt that completed it.
ALTER TABLE task_facts ADD COLUMN IF NOT EXISTS last_started_at DATETIME(6) NULL AFTER first_started_at;
-- Recompute every task at the next trigger.
UPDATE trigger_state SET last_seq = 0 WHERE name = 'task_facts';
