-- Which session of an agent is open, and until when by the database's clock
-- (issue 17): a replica that does not hold an agent's session tells whether
-- it is connected from these, not from its own memory. `session_id` names
-- the open session so that an old session's close, on a replica that lost
-- the agent to another, does not end the new one; `session_until` is a
-- lease (milliseconds since the epoch, the database's clock) that each
-- write of `last_seen` renews, so a replica that died without closing its
-- sessions stops counting as holding them. `agent_sha256` is what the open
-- session's Hello said of the agent's executable, for `launch agents
-- upgrade` through any replica.
ALTER TABLE agents ADD COLUMN session_id TEXT NOT NULL DEFAULT '';
ALTER TABLE agents ADD COLUMN session_until INTEGER NOT NULL DEFAULT 0;
ALTER TABLE agents ADD COLUMN agent_sha256 TEXT NOT NULL DEFAULT '';
