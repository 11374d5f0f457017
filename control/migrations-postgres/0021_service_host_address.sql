-- The PostgreSQL twin of control/migrations/0021_service_host_address.sql (BIGINT for INTEGER,
-- BYTEA for BLOB); a store test keeps the two sets to the same files.
-- The address the provider saw for a service's host (its public IP, else its
-- private one), registered with EnsureService: the host part of the URL of a
-- service without an fqdn, instead of the agent's kernel hostname.
ALTER TABLE services ADD COLUMN host_address TEXT NOT NULL DEFAULT '';
