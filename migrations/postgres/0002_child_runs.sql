-- A child workflow run points at the run whose step started it. `resume`
-- drives top-level runs; each parent drives its children.
ALTER TABLE runs ADD COLUMN parent_id TEXT NULL;
CREATE INDEX runs_parent ON runs (parent_id);
