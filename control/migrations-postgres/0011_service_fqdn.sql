-- The PostgreSQL twin of control/migrations/0011_service_fqdn.sql (BIGINT for INTEGER,
-- BYTEA for BLOB); a store test keeps the two sets to the same files.
-- The public name of a service (its fqdn), registered by the provider with
-- EnsureService; deploy missions hand it to the agent's front door to route.
ALTER TABLE services ADD COLUMN fqdn TEXT NOT NULL DEFAULT '';
