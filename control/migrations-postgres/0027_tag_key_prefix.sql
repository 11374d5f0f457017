-- The PostgreSQL twin of control/migrations/0027_tag_key_prefix.sql.
-- The search box's completions (`TagVocabulary`) read the tag keys that
-- start with what was typed as a range in byte order, `key COLLATE "C"`
-- (the database's collation may sort otherwise): this index holds the keys
-- in that order, so the range reads only the keys it names.
CREATE INDEX service_tags_key_bytes ON service_tags (key COLLATE "C", value);
