ALTER TABLE attempts ALTER COLUMN id SET DEFAULT gen_random_uuid();
ALTER TABLE deliveries ALTER COLUMN id SET DEFAULT gen_random_uuid();
DROP FUNCTION uuid_v7();
