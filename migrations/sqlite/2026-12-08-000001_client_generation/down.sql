ALTER TABLE clients DROP COLUMN generation;
