DELETE FROM attempts WHERE status IN ('bounced', 'complained');
ALTER TABLE attempts DROP CONSTRAINT attempts_status_check;
ALTER TABLE attempts ADD CONSTRAINT attempts_status_check
    CHECK (status IN ('success', 'temporary_failure', 'permanent_failure', 'unknown'));
ALTER TABLE runs DROP COLUMN suppressed;
DROP TABLE suppressions;
DROP TABLE bounces;
