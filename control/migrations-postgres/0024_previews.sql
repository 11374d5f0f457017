-- The PostgreSQL twin of control/migrations/0024_previews.sql (BIGINT for INTEGER,
-- BYTEA for BLOB); a store test keeps the two sets to the same files.
-- Pull-request previews (issue 14): an ephemeral copy of a service beside
-- its environment on the same agent, named by a DNS label (`pr-123`).
-- A preview's releases and missions carry its name, so they never count as
-- the environment's own (its current release, URL, newest mission, logs).
-- A row in `previews` is a live preview; removing one deletes the row and
-- queues a `preview_remove` mission in the same transaction. Per-preview
-- secret overrides live in `secrets` under the environment
-- `<environment>@<preview>`, a name no environment can have (environments
-- are DNS labels), so key rotation re-seals them with the rest.
ALTER TABLE missions ADD COLUMN preview TEXT NOT NULL DEFAULT '';
ALTER TABLE releases ADD COLUMN preview TEXT NOT NULL DEFAULT '';

CREATE TABLE previews (
    service     TEXT NOT NULL,
    environment TEXT NOT NULL,
    preview     TEXT NOT NULL,
    created     BIGINT NOT NULL,
    last_deploy BIGINT NOT NULL,
    -- The newest release deployed to the preview.
    release_id  TEXT NOT NULL,
    PRIMARY KEY (service, environment, preview)
);
