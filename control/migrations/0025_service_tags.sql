-- Service tags (issue 15): `key=value` pairs on a (service, environment),
-- listed with the service and searched by the dashboard and
-- `launch services --tag`. Keys and values follow `launch_core::tags`.
-- `source` says who owns the key: 'terraform' (the provider's `tags`),
-- 'launch.toml' (`[tags]`, applied by a deploy) or 'cli' (`launch services
-- tag`). Terraform and launch.toml each replace their own keys on every
-- apply or deploy; the CLI edits only keys neither of them owns.
CREATE TABLE service_tags (
    service     TEXT NOT NULL,
    environment TEXT NOT NULL,
    key         TEXT NOT NULL,
    value       TEXT NOT NULL,
    source      TEXT NOT NULL,
    updated     BIGINT NOT NULL,
    PRIMARY KEY (service, environment, key)
);
CREATE INDEX service_tags_by_key ON service_tags (key, value);
