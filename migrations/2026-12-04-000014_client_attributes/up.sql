-- A client's own fields (company, plan, city...): a JSON object the owner fills through
-- the API and the CSV import (validated there: at most 50 keys of letters, digits and _,
-- values strings, numbers or booleans); templates read them as client.attributes.<key>.
-- The checks here are the backstop: an object, and bounded in size.
ALTER TABLE clients
    ADD COLUMN attributes jsonb NOT NULL DEFAULT '{}'
        CONSTRAINT clients_attributes_object CHECK (jsonb_typeof(attributes) = 'object'),
    ADD CONSTRAINT clients_attributes_size CHECK (octet_length(attributes::text) <= 65536);
