-- The PostgreSQL twin of control/migrations/0014_scoped_api_tokens.sql (BIGINT for INTEGER,
-- BYTEA for BLOB); a store test keeps the two sets to the same files.
-- Scoped API tokens (issue 13). A token grants one scope (admin, deploy,
-- read) over the services and environments its patterns match (`*` is any
-- run of characters). Rows from before this migration were admin tokens.
-- `expires` and `last_used` are unix ms (NULL: never / not yet); `revoked`
-- tokens stay listed so `launch token list` shows what was cut off.

ALTER TABLE api_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'admin';
ALTER TABLE api_tokens ADD COLUMN service_pattern TEXT NOT NULL DEFAULT '*';
ALTER TABLE api_tokens ADD COLUMN environment_pattern TEXT NOT NULL DEFAULT '*';
ALTER TABLE api_tokens ADD COLUMN expires BIGINT;
ALTER TABLE api_tokens ADD COLUMN creator TEXT NOT NULL DEFAULT '';
ALTER TABLE api_tokens ADD COLUMN last_used BIGINT;
ALTER TABLE api_tokens ADD COLUMN revoked BIGINT NOT NULL DEFAULT 0;
