-- Scoped API tokens (issue 13). A token grants one scope (admin, deploy,
-- read) over the services and environments its patterns match (`*` is any
-- run of characters). Rows from before this migration were admin tokens.
-- `expires` and `last_used` are unix ms (NULL: never / not yet); `revoked`
-- tokens stay listed so `launch token list` shows what was cut off.

ALTER TABLE api_tokens ADD COLUMN scope TEXT NOT NULL DEFAULT 'admin';
ALTER TABLE api_tokens ADD COLUMN service_pattern TEXT NOT NULL DEFAULT '*';
ALTER TABLE api_tokens ADD COLUMN environment_pattern TEXT NOT NULL DEFAULT '*';
ALTER TABLE api_tokens ADD COLUMN expires INTEGER;
ALTER TABLE api_tokens ADD COLUMN creator TEXT NOT NULL DEFAULT '';
ALTER TABLE api_tokens ADD COLUMN last_used INTEGER;
ALTER TABLE api_tokens ADD COLUMN revoked INTEGER NOT NULL DEFAULT 0;
