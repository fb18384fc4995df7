ALTER TABLE clients DROP COLUMN attributes;
