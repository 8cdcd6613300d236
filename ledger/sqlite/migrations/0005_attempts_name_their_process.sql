-- Each attempt names the process that made it (the host and pid of its
-- run's owner): a batch a process took over from another tells in the
-- ledger which of them sent or enquired each row. The attempts log is
-- the send path's hottest insert, so an attempt holds an integer, the id
-- of its process here, not the host's name; a writer looks its process
-- up once. Attempts logged before this migration have none (NULL): not
-- known. There is no foreign key: its check would cost every insert, and
-- processes are never deleted.
CREATE TABLE processes (
    id   INTEGER PRIMARY KEY,
    host TEXT    NOT NULL,
    pid  INTEGER NOT NULL,
    UNIQUE (host, pid)
);
ALTER TABLE attempts ADD COLUMN process INTEGER;
