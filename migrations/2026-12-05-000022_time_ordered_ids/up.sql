-- Time-ordered ids (UUID version 7: 48 bits of Unix milliseconds, then random bits) for the
-- two tables written per delivery. A random id (gen_random_uuid) puts each new key of a
-- B-tree on a random leaf: every delivery's outcome (a new row version, so a new entry in
-- the primary key and in the listing index that ends in the id) and every attempt (its
-- primary key and its (delivery_id, attempt_number) key) dirtied a leaf of its own, and
-- after each checkpoint wrote that whole 8 KiB page to the WAL. With ids in the order they
-- are made, a run's deliveries (written in client order, sent in client order) and their
-- attempts land on the same few leaves. Measured at the floor (bench/postgres_floor.sh,
-- README): PostgreSQL CPU per delivery 76-78 -> 64-67 us. PostgreSQL 15 has no uuidv7()
-- (18 does); this is the usual SQL form of it. Ids stay opaque: nothing relies on their
-- being unguessable (links carry an HMAC, every read is scoped to its owner).
CREATE FUNCTION uuid_v7() RETURNS uuid
LANGUAGE sql VOLATILE PARALLEL SAFE
AS $$
    SELECT encode(
        set_bit(set_bit(
            overlay(uuid_send(gen_random_uuid())
                    PLACING substring(int8send((extract(epoch FROM clock_timestamp()) * 1000)::bigint) FROM 3)
                    FROM 1 FOR 6),
            52, 1), 53, 1),
        'hex')::uuid
$$;

ALTER TABLE deliveries ALTER COLUMN id SET DEFAULT uuid_v7();
ALTER TABLE attempts ALTER COLUMN id SET DEFAULT uuid_v7();
