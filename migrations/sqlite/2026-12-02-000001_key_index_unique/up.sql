-- The gateway's key index holds the first 16 bytes of a key's SHA-256 (32 hex digits): two
-- keys that share them would find the same client. The whole hash is unique already; this
-- makes the part the index uses unique too, so the database refuses such a pair (as a taken
-- `api_key`) whichever process creates it.
CREATE UNIQUE INDEX clients_api_key_hash_head ON clients (substr(api_key_hash, 1, 32));
