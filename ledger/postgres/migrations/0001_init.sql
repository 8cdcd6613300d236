-- aopbatch's ledger on PostgreSQL, shared by every process and host that
-- runs a provider account's batches. Money is integer paise; times are
-- Unix milliseconds by the database's clock (corrected into each process),
-- so hosts whose clocks disagree still agree on when a lease expires.

-- Batches: one per input file (or per --batch id). status moves
-- ingesting -> ready; ingest_owner is the session recording the file, and
-- a half-recorded batch is cleared and recorded again by whoever takes the
-- ingest over, so a half-read file is never sent.
CREATE TABLE batches (
    seq          BIGSERIAL PRIMARY KEY,
    id           TEXT    NOT NULL UNIQUE,
    content_hash TEXT    NOT NULL,
    source       TEXT    NOT NULL DEFAULT '',
    header       TEXT    NOT NULL DEFAULT '[]',
    status       TEXT    NOT NULL CHECK (status IN ('ingesting', 'ready')),
    rows_total   BIGINT  NOT NULL DEFAULT 0,
    created_ms   BIGINT  NOT NULL,
    ingest_owner TEXT
);

-- Sessions: one per process working on a batch, with its lease. Every
-- write of a process locks its session row (FOR KEY SHARE) in the write's
-- own transaction; taking over a dead process deletes its row, so the
-- process, if it was only paused, writes nothing more once it resumes.
CREATE TABLE sessions (
    batch      BIGINT  NOT NULL REFERENCES batches (seq) ON DELETE CASCADE,
    owner      TEXT    NOT NULL,
    host       TEXT    NOT NULL DEFAULT '',
    pid        INTEGER NOT NULL DEFAULT 0,
    expires_ms BIGINT  NOT NULL,
    PRIMARY KEY (batch, owner)
);

-- Rows: one per data row of the file, rejected and conflict included.
-- request holds the exact JSON body sent on every attempt; raw holds a
-- rejected row's cells. A row in flight names the session that claimed it
-- (claimed_by) and how: 'dispatch' (a chunk claimed for sending; counted as
-- a send once it has an outcome) or 'mark' (one row, counted at once).
CREATE TABLE rows (
    batch          BIGINT  NOT NULL REFERENCES batches (seq),
    line           INTEGER NOT NULL,
    referenceid    TEXT    NOT NULL,
    operator       BIGINT  NOT NULL DEFAULT 0,
    canumber       TEXT    NOT NULL DEFAULT '',
    amount_paise   BIGINT  NOT NULL DEFAULT 0,
    request        BYTEA,
    raw            TEXT,
    state          TEXT    NOT NULL CHECK (state IN ('queued', 'inflight', 'success', 'failed', 'pending',
                       'duplicate', 'unknown', 'held', 'refunded', 'rejected', 'conflict')),
    response_code  INTEGER,
    message        TEXT    NOT NULL DEFAULT '',
    error_code     TEXT    NOT NULL DEFAULT '',
    error_column   TEXT    NOT NULL DEFAULT '',
    attempts       INTEGER NOT NULL DEFAULT 0,
    provider_txnid TEXT    NOT NULL DEFAULT '',
    first_sent_ms  BIGINT,
    updated_ms     BIGINT  NOT NULL,
    claimed_by     TEXT,
    claim          TEXT    CHECK (claim IN ('dispatch', 'mark')),
    claimed_ms     BIGINT,
    PRIMARY KEY (batch, line),
    CHECK (request IS NOT NULL OR state IN ('rejected', 'conflict')),
    CHECK ((state = 'inflight') = (claimed_by IS NOT NULL AND claim IS NOT NULL))
);

-- A referenceid is the provider's idempotency key: it may belong to one
-- sendable row in the whole ledger, across batches and hosts.
CREATE UNIQUE INDEX rows_referenceid ON rows (referenceid) WHERE request IS NOT NULL;

-- Pages of one state in line order; claims of the next queued rows.
CREATE INDEX rows_state ON rows (batch, state, line);

-- Attempts: append-only log of every request made for a row.
CREATE TABLE attempts (
    id            BIGSERIAL PRIMARY KEY,
    batch         BIGINT  NOT NULL,
    line          INTEGER NOT NULL,
    kind          TEXT    NOT NULL CHECK (kind IN ('recharge', 'status')),
    at_ms         BIGINT  NOT NULL,
    latency_ms    BIGINT  NOT NULL DEFAULT 0,
    http_status   INTEGER NOT NULL DEFAULT 0,
    response_code INTEGER,
    class         TEXT    NOT NULL,
    state         TEXT    NOT NULL,
    message       TEXT    NOT NULL DEFAULT ''
);
CREATE INDEX attempts_batch ON attempts (batch, id);

-- Rate budgets: the send rate of a provider account, shared by every
-- process (GCRA): tat_us is the theoretical time, in microseconds by the
-- database's clock, at which the account's next request may go.
CREATE TABLE rate_budgets (
    account TEXT   PRIMARY KEY,
    tat_us  BIGINT NOT NULL
);
