DROP TABLE import_errors;
DROP TABLE import_rows;
DROP TABLE import_jobs;
DROP INDEX clients_owner_subscribed;
DROP INDEX clients_attributes_gin;
DROP TABLE mailing_tags;
ALTER TABLE mailings DROP COLUMN audience_segment, DROP COLUMN audience_all;
