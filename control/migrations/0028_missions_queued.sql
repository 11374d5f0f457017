-- The queued missions alone (issue 17): every few seconds each replica looks
-- for queued missions of the sessions it holds, in one query for all of them
-- (`Store::queued_missions`); this keeps that query from reading the
-- finished missions, which are nearly all of them.
CREATE INDEX missions_queued ON missions (id) WHERE state = 'queued';
