-- The search box's completions (`TagVocabulary`) read the tag keys that
-- start with what was typed as a range in byte order. On SQLite text
-- compares in byte order already, and `service_tags_by_key (key, value)`
-- (0025) serves the range: nothing to add. PostgreSQL's twin adds the
-- index in byte order its collation may not give.
SELECT 1;
