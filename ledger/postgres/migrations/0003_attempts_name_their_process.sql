-- Each attempt names the process that made it (the host and pid of its
-- run's owner): on a ledger shared by hosts, which of them sent or
-- enquired each row, the morning after a night one host was killed and
-- another taken over. Sessions, which name a batch's processes too, are
-- deleted as runs end. The attempts log is the send path's hottest
-- insert, so an attempt holds an integer, the id of its process here, not
-- the host's name; a writer looks its process up once. Attempts logged
-- before this migration have none (NULL): not known. There is no foreign
-- key: its check would cost every insert, and processes are never
-- deleted.
CREATE TABLE processes (
    id   BIGSERIAL PRIMARY KEY,
    host TEXT    NOT NULL,
    pid  INTEGER NOT NULL,
    UNIQUE (host, pid)
);
ALTER TABLE attempts ADD COLUMN process BIGINT;
