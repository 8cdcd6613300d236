-- Rows in flight name the run that put them there: a dispatch its owner,
-- a marked row (claimed_by) its marker. Recovery then turns into unknown
-- only what runs other than the recovering one left in flight, the rule
-- every store keeps (a shared store recovers while its own run sends).
-- Dispatches and marks made before this migration have no owner and are
-- recovered by any run, as before.
ALTER TABLE dispatches ADD COLUMN owner TEXT NOT NULL DEFAULT '';
ALTER TABLE rows ADD COLUMN claimed_by TEXT;
