-- Run by the trigger for the ledger range seq > ? AND seq <= ? (the events that arrived
-- since the last trigger): recomputes the facts of every task with an event in it from
-- all of that task's events, and updates them in place.
--
-- The plan matters: the tasks of the range are found first (a range of the primary key),
-- and each one's events through events_task, so a trigger reads what its new events
-- touch, whatever the size of the ledger. Written as "task_id IN (the range's tasks)",
-- MariaDB 10.11 planned a scan of the whole events table whenever the range was a large
-- share of the ledger (a third, in the bench's runs on a fresh database; a tenth was read
-- by key). STRAIGHT_JOIN keeps the order, and FORCE INDEX the lookup by key (a batch of
-- many tasks could otherwise be planned as one scan joined in a buffer). An update in
-- place (not REPLACE, which deletes the row and inserts it again, with every index entry)
-- rewrites only the index entries whose times changed.
INSERT INTO task_facts
  (task_id, task_type, accepted_at, first_started_at, last_started_at, completed_at, failed_at, cancelled_at, starts, failed_attempts)
SELECT e.task_id, MAX(e.task_type),
  MIN(CASE WHEN e.kind = 'accepted' THEN e.event_time END),
  MIN(CASE WHEN e.kind = 'started' THEN e.event_time END),
  MAX(CASE WHEN e.kind = 'started' THEN e.event_time END),
  MIN(CASE WHEN e.kind = 'completed' THEN e.event_time END),
  MIN(CASE WHEN e.kind = 'failed' THEN e.event_time END),
  MIN(CASE WHEN e.kind = 'cancelled' THEN e.event_time END),
  COUNT(DISTINCT CASE WHEN e.kind = 'started' THEN e.attempt END),
  COUNT(DISTINCT CASE WHEN e.kind = 'attempt_failed' THEN e.attempt END)
FROM (SELECT DISTINCT task_id FROM events WHERE seq > ? AND seq <= ?) AS touched
STRAIGHT_JOIN events e FORCE INDEX (events_task) ON e.task_id = touched.task_id
GROUP BY e.task_id
ON DUPLICATE KEY UPDATE task_type = VALUES(task_type), accepted_at = VALUES(accepted_at),
  first_started_at = VALUES(first_started_at), last_started_at = VALUES(last_started_at),
  completed_at = VALUES(completed_at), failed_at = VALUES(failed_at), cancelled_at = VALUES(cancelled_at),
  starts = VALUES(starts), failed_attempts = VALUES(failed_attempts);
