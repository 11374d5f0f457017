-- The public name of a service (its fqdn), registered by the provider with
-- EnsureService; deploy missions hand it to the agent's front door to route.
ALTER TABLE services ADD COLUMN fqdn TEXT NOT NULL DEFAULT '';
