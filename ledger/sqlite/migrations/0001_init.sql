-- Batches: one per input file (or per --batch id). status moves
-- ingesting -> ready; a batch whose ingest did not finish is deleted and
-- ingested again, so a half-read file is never sent.
CREATE TABLE batches (
    seq              INTEGER PRIMARY KEY,
    id               TEXT    NOT NULL UNIQUE,
    content_hash     TEXT    NOT NULL,
    source           TEXT    NOT NULL DEFAULT '',
    header           TEXT    NOT NULL DEFAULT '[]',
    status           TEXT    NOT NULL CHECK (status IN ('ingesting', 'ready')),
    rows_total       INTEGER NOT NULL DEFAULT 0,
    created_ms       INTEGER NOT NULL,
    lease_owner      TEXT,
    lease_host       TEXT,
    lease_pid        INTEGER,
    lease_expires_ms INTEGER
);

-- Rows: one per data row of the file, rejected and conflict included.
-- Money is integer paise. request holds the exact JSON body sent on every
-- attempt; raw holds a rejected row's cells for rejects.csv.
CREATE TABLE rows (
    batch          INTEGER NOT NULL REFERENCES batches (seq),
    line           INTEGER NOT NULL,
    referenceid    TEXT    NOT NULL,
    operator       INTEGER NOT NULL DEFAULT 0,
    canumber       TEXT    NOT NULL DEFAULT '',
    amount_paise   INTEGER NOT NULL DEFAULT 0,
    request        BLOB,
    raw            TEXT,
    state          TEXT    NOT NULL CHECK (state IN ('queued', 'inflight', 'success', 'failed',
                       'pending', 'duplicate', 'unknown', 'held', 'refunded', 'rejected', 'conflict')),
    response_code  INTEGER,
    message        TEXT    NOT NULL DEFAULT '',
    error_code     TEXT    NOT NULL DEFAULT '',
    error_column   TEXT    NOT NULL DEFAULT '',
    attempts       INTEGER NOT NULL DEFAULT 0,
    provider_txnid TEXT    NOT NULL DEFAULT '',
    first_sent_ms  INTEGER,
    updated_ms     INTEGER NOT NULL,
    PRIMARY KEY (batch, line)
) WITHOUT ROWID;

-- A referenceid is the provider's idempotency key: it may belong to one
-- sendable row in the whole ledger, across batches. Rejected and conflict
-- rows are never sent, so they do not hold it.
CREATE UNIQUE INDEX rows_referenceid ON rows (referenceid)
    WHERE state NOT IN ('rejected', 'conflict');

-- Pages of one state in line order, and counts/sums by state without
-- touching the table.
CREATE INDEX rows_state ON rows (batch, state, line, amount_paise);

-- Attempts: append-only log of every request made for a row. No secondary
-- index: appends stay cheap on the hot path, and readers scan by batch.
CREATE TABLE attempts (
    id            INTEGER PRIMARY KEY,
    batch         INTEGER NOT NULL,
    line          INTEGER NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('recharge', 'status')),
    at_ms         INTEGER NOT NULL,
    latency_ms    INTEGER NOT NULL DEFAULT 0,
    http_status   INTEGER NOT NULL DEFAULT 0,
    response_code INTEGER,
    class         TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    message       TEXT    NOT NULL DEFAULT ''
);
