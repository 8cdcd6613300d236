-- Rows again, the same columns, changed where every write paid for them:
--
-- * The state CHECK was "state IN (eleven names)". SQLite evaluates that
--   list through a temporary table on every insert and every state change,
--   about a third of the cost of the update that records an outcome. The
--   same check as a chain of comparisons costs almost nothing.
-- * The referenceid index's condition named the state column, so every
--   state change (two per row sent) rewrote the row's index entry. A
--   sendable row is exactly one stored with a request body (rejected and
--   conflict rows have none, no row moves to those states after ingest,
--   and the body never changes), so the index now keys on that.
--
-- The state names must match State in state.go.
CREATE TABLE rows_v2 (
    batch          INTEGER NOT NULL REFERENCES batches (seq),
    line           INTEGER NOT NULL,
    referenceid    TEXT    NOT NULL,
    operator       INTEGER NOT NULL DEFAULT 0,
    canumber       TEXT    NOT NULL DEFAULT '',
    amount_paise   INTEGER NOT NULL DEFAULT 0,
    request        BLOB,
    raw            TEXT,
    state          TEXT    NOT NULL CHECK (state = 'queued' OR state = 'inflight' OR state = 'success'
                       OR state = 'failed' OR state = 'pending' OR state = 'duplicate' OR state = 'unknown'
                       OR state = 'held' OR state = 'refunded' OR state = 'rejected' OR state = 'conflict'),
    response_code  INTEGER,
    message        TEXT    NOT NULL DEFAULT '',
    error_code     TEXT    NOT NULL DEFAULT '',
    error_column   TEXT    NOT NULL DEFAULT '',
    attempts       INTEGER NOT NULL DEFAULT 0,
    provider_txnid TEXT    NOT NULL DEFAULT '',
    first_sent_ms  INTEGER,
    updated_ms     INTEGER NOT NULL,
    PRIMARY KEY (batch, line),
    -- The referenceid index below covers the rows with a body: a row that
    -- may be sent must have one, or its referenceid would not be held.
    CHECK (request IS NOT NULL OR state = 'rejected' OR state = 'conflict')
) WITHOUT ROWID;

INSERT INTO rows_v2 SELECT batch, line, referenceid, operator, canumber, amount_paise, request, raw, state,
    response_code, message, error_code, error_column, attempts, provider_txnid, first_sent_ms, updated_ms
FROM rows;

DROP TABLE rows;
ALTER TABLE rows_v2 RENAME TO rows;

-- A referenceid is the provider's idempotency key: it may belong to one
-- sendable row in the whole ledger, across batches.
CREATE UNIQUE INDEX rows_referenceid ON rows (referenceid) WHERE request IS NOT NULL;

-- Pages of one state in line order, and counts/sums by state without
-- touching the table.
CREATE INDEX rows_state ON rows (batch, state, line, amount_paise);

-- Dispatches: the send path's durable in-flight record. A run records a
-- chunk of queued rows here, and commits it, before it sends any of them;
-- the rows stay queued until their outcome, which spares each row the
-- state change (and its index writes) of being marked inflight. A run that
-- ends cleanly deletes its dispatches. After a crash, the next run turns
-- the rows of the dispatches left here that are still queued into unknown:
-- they may have been sent. lines is a JSON array of line numbers.
CREATE TABLE dispatches (
    id    INTEGER PRIMARY KEY,
    batch INTEGER NOT NULL REFERENCES batches (seq),
    lines TEXT    NOT NULL,
    at_ms INTEGER NOT NULL
);
CREATE INDEX dispatches_batch ON dispatches (batch);
