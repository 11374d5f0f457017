-- A deploy's read and writes as the store sends them on PostgreSQL before
-- stop 28: the read, then a transaction of one statement each.
-- Run by pgbench (`database_floor` in `tests/benches/load.rs`); hand-written
-- from `store/deploy_read.rs` and `missions::deploy_statements`. The mission
-- is recorded healthy so that nothing in the server picks it up.
\set n random(1, 1000000000000)
\set s random(1, 1000)
SELECT CAST(0 AS BIGINT) AS part, key AS text, nonce, ciphertext, updated FROM secrets WHERE service = 'floor' || :s AND environment = 'load' UNION ALL SELECT CAST(1 AS BIGINT), key, nonce, ciphertext, updated FROM secrets WHERE service = 'floor' || :s AND environment = 'load' AND environment <> 'load' UNION ALL SELECT CAST(2 AS BIGINT), compose, NULL, NULL, CAST(0 AS BIGINT) FROM (SELECT compose FROM agents WHERE service = 'floor' || :s AND environment = 'load' AND revoked = 0 AND compose != '' ORDER BY hello_at DESC, id DESC LIMIT 1) AS newest UNION ALL SELECT CAST(3 AS BIGINT), allowance, NULL, NULL, granted FROM service_allowances WHERE service = 'floor' || :s AND environment = 'load';
BEGIN;
INSERT INTO services (service, environment, created) VALUES ('floor' || :s, 'load', 1) ON CONFLICT (service, environment) DO UPDATE SET retired = 0 RETURNING fqdn, host_address;
INSERT INTO releases (id, service, environment, git_ref, bundle_sha256, bundle_size, state, created, mission_id, preview) VALUES ('r' || :n, 'floor' || :s, 'load', 'load', 'floor', 100, 'pending', 1, 'm' || :n, '');
INSERT INTO missions (id, kind, service, environment, release_id, state, created, updated, preview, agent_id) VALUES ('m' || :n, 'deploy', 'floor' || :s, 'load', 'r' || :n, 'healthy', 1, 1, '', '');
DELETE FROM service_tags WHERE service = 'floor' || :s AND environment = 'load' AND source = 'launch.toml';
COMMIT;
