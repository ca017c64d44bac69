DROP INDEX clients_api_key_hash_head;
