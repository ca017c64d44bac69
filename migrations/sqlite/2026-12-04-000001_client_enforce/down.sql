ALTER TABLE clients DROP COLUMN enforce;
