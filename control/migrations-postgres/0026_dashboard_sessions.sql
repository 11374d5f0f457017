-- The PostgreSQL twin of control/migrations/0026_dashboard_sessions.sql (BYTEA for BLOB);
-- a store test keeps the two sets to the same files.
-- Dashboard sessions (issue 15). The browser holds a random session id in an
-- HttpOnly cookie; the row is found by the id's sha256 (`id_hash`), so the
-- table alone lets no one in. The API token the session acts with is sealed
-- (AES-256-GCM) under a key derived from the session id, which the table
-- does not hold: a copy of the database yields neither sessions nor tokens.
-- `token_hash` is the token's sha256, as in `api_tokens`, so revoking a
-- token can end its sessions. `scope` is what the token said it was at
-- login (display only: every call is authorized again by `authz`).
CREATE TABLE dashboard_sessions (
    id_hash      TEXT PRIMARY KEY,
    token_hash   TEXT NOT NULL,
    token_nonce  BYTEA NOT NULL,
    token_sealed BYTEA NOT NULL,
    csrf         TEXT NOT NULL,
    name         TEXT NOT NULL,
    scope        TEXT NOT NULL,
    created      BIGINT NOT NULL,
    expires      BIGINT NOT NULL
);
CREATE INDEX dashboard_sessions_token ON dashboard_sessions (token_hash);
