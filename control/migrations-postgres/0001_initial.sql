-- The PostgreSQL twin of control/migrations/0001_initial.sql (BIGINT for INTEGER,
-- BYTEA for BLOB); a store test keeps the two sets to the same files.
-- The whole control-plane store. Times are unix milliseconds; ids are
-- prefixed lower-case ULIDs (m-, r-, a-, j-); token columns hold sha256 hex
-- hashes only, never a token.

CREATE TABLE settings (
    key   TEXT PRIMARY KEY NOT NULL,
    value TEXT NOT NULL
);

CREATE TABLE services (
    service            TEXT NOT NULL,
    environment        TEXT NOT NULL,
    created            BIGINT NOT NULL,
    note               TEXT NOT NULL DEFAULT '',
    retired            BIGINT NOT NULL DEFAULT 0,
    current_release_id TEXT,
    PRIMARY KEY (service, environment)
);

CREATE TABLE agents (
    id          TEXT PRIMARY KEY NOT NULL,
    service     TEXT NOT NULL,
    environment TEXT NOT NULL,
    labels      TEXT NOT NULL,
    hostname    TEXT NOT NULL,
    version     TEXT NOT NULL,
    token_hash  TEXT NOT NULL UNIQUE,
    revoked     BIGINT NOT NULL DEFAULT 0,
    registered  BIGINT NOT NULL,
    last_seen   BIGINT NOT NULL
);
CREATE INDEX agents_by_service ON agents (service, environment);

CREATE TABLE join_tokens (
    id            TEXT PRIMARY KEY NOT NULL,
    hash          TEXT NOT NULL UNIQUE,
    service       TEXT NOT NULL,
    environment   TEXT NOT NULL,
    created       BIGINT NOT NULL,
    expires       BIGINT NOT NULL,
    used_at       BIGINT,
    used_by_agent TEXT,
    revoked       BIGINT NOT NULL DEFAULT 0
);

CREATE TABLE api_tokens (
    id      TEXT PRIMARY KEY NOT NULL,
    hash    TEXT NOT NULL UNIQUE,
    name    TEXT NOT NULL,
    created BIGINT NOT NULL
);

CREATE TABLE releases (
    id            TEXT PRIMARY KEY NOT NULL,
    service       TEXT NOT NULL,
    environment   TEXT NOT NULL,
    git_ref       TEXT NOT NULL,
    bundle_sha256 TEXT NOT NULL,
    bundle_size   BIGINT NOT NULL,
    state         TEXT NOT NULL,
    created       BIGINT NOT NULL,
    mission_id    TEXT NOT NULL
);
CREATE INDEX releases_by_service ON releases (service, environment, id);

CREATE TABLE missions (
    id                TEXT PRIMARY KEY NOT NULL,
    kind              TEXT NOT NULL,
    service           TEXT NOT NULL,
    environment       TEXT NOT NULL,
    release_id        TEXT NOT NULL,
    state             TEXT NOT NULL,
    message           TEXT NOT NULL DEFAULT '',
    url               TEXT NOT NULL DEFAULT '',
    agent_id          TEXT NOT NULL DEFAULT '',
    -- The release running after the final update (after a rollback: the previous one).
    result_release_id TEXT NOT NULL DEFAULT '',
    created           BIGINT NOT NULL,
    updated           BIGINT NOT NULL
);
CREATE INDEX missions_by_service ON missions (service, environment, id);

CREATE TABLE log_lines (
    mission_id TEXT NOT NULL,
    seq        BIGINT NOT NULL,
    unix_ms    BIGINT NOT NULL,
    stream     BIGINT NOT NULL,
    source     TEXT NOT NULL,
    text       TEXT NOT NULL,
    PRIMARY KEY (mission_id, seq)
);

CREATE TABLE secrets (
    service     TEXT NOT NULL,
    environment TEXT NOT NULL,
    key         TEXT NOT NULL,
    nonce       BYTEA NOT NULL,
    ciphertext  BYTEA NOT NULL,
    updated     BIGINT NOT NULL,
    PRIMARY KEY (service, environment, key)
);
