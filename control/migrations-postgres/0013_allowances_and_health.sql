-- The PostgreSQL twin of control/migrations/0013_allowances_and_health.sql (BIGINT for INTEGER,
-- BYTEA for BLOB); a store test keeps the two sets to the same files.
-- Host-policy allowances (launch_core::policy): what an admin lets one
-- service in one environment ask of its host, with who granted it and when.
CREATE TABLE service_allowances (
    service     TEXT NOT NULL,
    environment TEXT NOT NULL,
    allowance   TEXT NOT NULL,
    granted_by  TEXT NOT NULL,
    granted     BIGINT NOT NULL,
    PRIMARY KEY (service, environment, allowance)
);

-- How each service's current release is doing between missions, as its
-- agent last reported (agent/src/watch.rs): degraded with a reason, or not.
CREATE TABLE service_health (
    service     TEXT NOT NULL,
    environment TEXT NOT NULL,
    release_id  TEXT NOT NULL,
    degraded    BIGINT NOT NULL,
    message     TEXT NOT NULL,
    updated     BIGINT NOT NULL,
    PRIMARY KEY (service, environment)
);
