-- Tasks accepted and not yet started, as sampled at each trigger (last hour).
SELECT sampled_at, pending FROM pending_samples
WHERE sampled_at >= UTC_TIMESTAMP(6) - INTERVAL 1 HOUR ORDER BY sampled_at;
