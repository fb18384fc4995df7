-- deliveries.mailing_id and owner_id are copies of their run's mailing and its owner,
-- written only by the statement that expands a run; attempts.mailing_id and owner_id are
-- copies of their delivery's, written only by the statements that record a send. They are
-- there so per-mailing and per-owner reads need no join. The foreign keys of the rows they
-- copy already hold them (deliveries.run_id -> runs -> mailings -> users;
-- attempts.delivery_id -> deliveries), and checking them again cost PostgreSQL two lookups
-- per delivery expanded and two per attempt logged: about 14% of its CPU per delivery in
-- the dispatch benchmark (bench/dispatch.sh, BENCH_EXPERIMENT_SQL, three runs each way).
ALTER TABLE deliveries
    DROP CONSTRAINT deliveries_mailing_id_fkey,
    DROP CONSTRAINT deliveries_owner_id_fkey;
ALTER TABLE attempts
    DROP CONSTRAINT attempts_mailing_id_fkey,
    DROP CONSTRAINT attempts_owner_id_fkey;
