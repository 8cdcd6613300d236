-- A row exported to be sent again under a new referenceid (export
-- --state failed, refunded, rejected or conflict) carries the row it
-- retries, "BATCH:LINE", in the file's retryof column, and keeps it here.
-- Like a referenceid, a retried row may belong to one sendable row in the
-- whole ledger: two files exported from the same failed rows before
-- either was sent have different referenceids, and without this both
-- would pay them. Rows stored before this migration retry nothing (NULL).
ALTER TABLE rows ADD COLUMN retry_of TEXT;
CREATE UNIQUE INDEX rows_retry_of ON rows (retry_of) WHERE retry_of IS NOT NULL AND request IS NOT NULL;
