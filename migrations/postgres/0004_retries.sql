-- A retry run points at the run it retries (`weft runs retry`), so that
-- each can name the other.
ALTER TABLE runs ADD COLUMN retry_of TEXT NULL;
CREATE INDEX runs_retry_of ON runs (retry_of);
