DROP INDEX mailings_live_idx;
DROP INDEX users_created_idx;
DROP INDEX deliveries_owner_sent_idx;
DROP TABLE daily_sends;
