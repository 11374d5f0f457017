-- The compose each agent's host runs, as its last Hello said (issue 17),
-- e.g. `docker-compose 1.29.2` (empty when it never said), and when that
-- Hello was written by the database's clock: a deploy through any replica
-- checks the bundle's compose against the compose of the service's agent
-- that said hello last, and `GetService` shows it, even when the agent's
-- session is on another replica or the control plane restarted since.
ALTER TABLE agents ADD COLUMN compose TEXT NOT NULL DEFAULT '';
ALTER TABLE agents ADD COLUMN hello_at BIGINT NOT NULL DEFAULT 0;
