-- [sipd] Call notices notifyd has not acknowledged move to the one durable
-- job table (queue 'sipd', through proto::jobs); the outbox table goes.
INSERT INTO jobs (queue, kind, payload, status, attempts, max_attempts, next_attempt_at,
                  created_at, updated_at)
SELECT 'sipd', kind, json_object('user_id', user_id, 'payload', json(payload)), 'pending', 0, 0,
       created_at, created_at, created_at
FROM sipd_notice_outbox ORDER BY seq;
DROP TABLE sipd_notice_outbox;
