DROP INDEX runs_mailing_run_at_idx;
DROP TABLE app_secrets;
ALTER TABLE deliveries DROP COLUMN attempts_before_retry;
DROP INDEX deliveries_claimable_idx;
CREATE INDEX deliveries_claimable_idx ON deliveries (next_attempt_at) WHERE status = 'pending';
