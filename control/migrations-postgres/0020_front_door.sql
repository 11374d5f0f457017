-- The PostgreSQL twin of control/migrations/0020_front_door.sql (BIGINT for INTEGER,
-- BYTEA for BLOB); a store test keeps the two sets to the same files.
-- Each agent's front door as it last reported it (agent/src/ingress/report.rs):
-- a prost-encoded FrontDoorReport holding the routes only (hosts, routed
-- release, certificate states). `seq` grows with every report, so the newest
-- report of a service's live agents is the one `launch status` shows.
CREATE TABLE front_door_routes (
    agent_id    TEXT PRIMARY KEY NOT NULL,
    service     TEXT NOT NULL,
    environment TEXT NOT NULL,
    report      BYTEA NOT NULL,
    seq         BIGINT NOT NULL
);

-- The proxy counters of every route, summed over agents and agent starts
-- (control/src/server/front_door.rs): only ever increased, by what grew.
CREATE TABLE proxy_counters (
    service     TEXT NOT NULL,
    environment TEXT NOT NULL,
    route       TEXT NOT NULL,
    series      TEXT NOT NULL,
    value       BIGINT NOT NULL,
    PRIMARY KEY (service, environment, route, series)
);

-- What each agent's counters stood at when last added, under which epoch
-- (new at every agent start): JSON {route: {series: value}}.
CREATE TABLE proxy_counter_marks (
    agent_id TEXT PRIMARY KEY NOT NULL,
    epoch    TEXT NOT NULL,
    marks    TEXT NOT NULL
);
