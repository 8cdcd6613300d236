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
-- Every writer records its process here, so a role that may write the
-- attempts log may write this table too: the roles that only use the
-- ledger were granted what it had when they were set up (the README's
-- GRANT ... ON ALL TABLES), which a table made later is not in. Without
-- this, every run of such a role failed to start once a host had upgraded
-- the ledger.
DO $$
DECLARE
    g   record;
    who text;
BEGIN
    FOR g IN SELECT DISTINCT a.grantee, a.privilege_type
        FROM pg_class c, aclexplode(c.relacl) a
        WHERE c.oid = 'attempts'::regclass AND a.privilege_type IN ('SELECT', 'INSERT', 'UPDATE', 'DELETE')
    LOOP
        who := CASE WHEN g.grantee = 0 THEN 'PUBLIC' ELSE g.grantee::regrole::text END;
        EXECUTE format('GRANT %s ON processes TO %s', g.privilege_type, who);
        IF g.privilege_type = 'INSERT' THEN
            EXECUTE format('GRANT USAGE ON SEQUENCE %s TO %s', pg_get_serial_sequence('processes', 'id'), who);
        END IF;
    END LOOP;
END $$;
