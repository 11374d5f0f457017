-- The PostgreSQL twin of control/migrations/0018_retired_history.sql (BIGINT for INTEGER,
-- BYTEA for BLOB); a store test keeps the two sets to the same files.
-- A retired service's missions and releases stay in the store for audit
-- (`launch releases --all`, `launch logs --mission`), but they end the
-- service's history: a service created again under the same name shows no
-- mission, URL, log or release of the retired host until it deploys.
ALTER TABLE missions ADD COLUMN retired BIGINT NOT NULL DEFAULT 0;
ALTER TABLE releases ADD COLUMN retired BIGINT NOT NULL DEFAULT 0;

-- Services retired before this migration: their missions end there too.
UPDATE missions SET retired = 1
WHERE EXISTS (
    SELECT 1 FROM services s
    WHERE s.service = missions.service AND s.environment = missions.environment AND s.retired = 1
);
