-- The referenceid index's condition named the state column, so every state
-- change rewrote the row's index entry: two needless index writes per row
-- sent. A sendable row is exactly one stored with a request body (rejected
-- and conflict rows have none, and no row ever moves to those states after
-- ingest), and the body never changes, so the index now keys on that.
DROP INDEX rows_referenceid;
CREATE UNIQUE INDEX rows_referenceid ON rows (referenceid) WHERE request IS NOT NULL;
