-- The PostgreSQL twin of control/migrations/0019_github.sql (BIGINT for INTEGER,
-- BYTEA for BLOB); a store test keeps the two sets to the same files.
-- GitHub: where a release came from (`launch deploy --repo/--pr`), the
-- webhook deliveries already handled, and what the control plane keeps
-- posted on each pull request: one comment (created once, then edited)
-- whose lines are the services deployed from that pull request.

CREATE TABLE release_sources (
    release_id TEXT PRIMARY KEY NOT NULL,
    repo       TEXT NOT NULL,
    pr         BIGINT NOT NULL DEFAULT 0
);
CREATE INDEX release_sources_by_pr ON release_sources (repo, pr);

CREATE TABLE github_deliveries (
    id       TEXT PRIMARY KEY NOT NULL,
    event    TEXT NOT NULL,
    received BIGINT NOT NULL
);

CREATE TABLE github_pull_requests (
    repo       TEXT NOT NULL,
    pr         BIGINT NOT NULL,
    -- 0 until the comment exists.
    comment_id BIGINT NOT NULL DEFAULT 0,
    closed     BIGINT NOT NULL DEFAULT 0,
    PRIMARY KEY (repo, pr)
);

CREATE TABLE github_pr_entries (
    repo        TEXT NOT NULL,
    pr          BIGINT NOT NULL,
    service     TEXT NOT NULL,
    environment TEXT NOT NULL,
    release_id  TEXT NOT NULL,
    git_ref     TEXT NOT NULL,
    state       TEXT NOT NULL,
    url         TEXT NOT NULL DEFAULT '',
    detail      TEXT NOT NULL DEFAULT '',
    updated     BIGINT NOT NULL,
    PRIMARY KEY (repo, pr, service, environment)
);

CREATE TABLE github_deployments (
    release_id    TEXT PRIMARY KEY NOT NULL,
    deployment_id BIGINT NOT NULL
);
