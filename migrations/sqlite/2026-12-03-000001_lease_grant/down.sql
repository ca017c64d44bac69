ALTER TABLE clients DROP COLUMN last_grant;
