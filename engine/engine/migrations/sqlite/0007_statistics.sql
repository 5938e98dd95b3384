-- Statistics (the three rates: response, resolution, satisfaction). What a case counts for lives
-- in its state (`figures`, kept by `counted` events in its history); a month of one unit is read
-- through this index. Purged cases keep what they counted for in monthly_figures.

CREATE INDEX instances_by_unit_created ON instances (unit, created_at);

ALTER TABLE monthly_figures ADD COLUMN raised    INTEGER NOT NULL DEFAULT 0; -- cases started, merged duplicates left out
ALTER TABLE monthly_figures ADD COLUMN responded INTEGER NOT NULL DEFAULT 0; -- cases that got a response
ALTER TABLE monthly_figures ADD COLUMN rated     INTEGER NOT NULL DEFAULT 0; -- cases residents answered in a follow-up
ALTER TABLE monthly_figures ADD COLUMN resolved  INTEGER NOT NULL DEFAULT 0; -- of those, solved in the residents' view
ALTER TABLE monthly_figures ADD COLUMN satisfied INTEGER NOT NULL DEFAULT 0; -- of those, satisfied
ALTER TABLE monthly_figures ADD COLUMN overdue   INTEGER NOT NULL DEFAULT 0; -- cases with a deadline passed
ALTER TABLE monthly_figures ADD COLUMN answers   INTEGER NOT NULL DEFAULT 0; -- follow-up answers
ALTER TABLE monthly_figures ADD COLUMN score_sum REAL    NOT NULL DEFAULT 0; -- their scores added up
