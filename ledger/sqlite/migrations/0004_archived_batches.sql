-- A batch moved to an archive (aopbatch ledger archive) keeps its row in
-- batches, naming the archive, and its rows their states, amounts and
-- referenceids: the referenceids stay held, so a file that reuses one is
-- still a conflict.
ALTER TABLE batches ADD COLUMN archived TEXT NOT NULL DEFAULT '';
