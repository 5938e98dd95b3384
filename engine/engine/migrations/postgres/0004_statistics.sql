-- Statistics (the three rates: response, resolution, satisfaction). What a case counts for lives
-- in its state (`figures`, kept by `counted` events in its history); a month of one unit is read
-- through this index. Purged cases keep what they counted for in monthly_figures.

CREATE INDEX instances_by_unit_created ON instances (unit, created_at);

ALTER TABLE monthly_figures
    ADD COLUMN raised    bigint NOT NULL DEFAULT 0,
    ADD COLUMN responded bigint NOT NULL DEFAULT 0,
    ADD COLUMN rated     bigint NOT NULL DEFAULT 0,
    ADD COLUMN resolved  bigint NOT NULL DEFAULT 0,
    ADD COLUMN satisfied bigint NOT NULL DEFAULT 0,
    ADD COLUMN overdue   bigint NOT NULL DEFAULT 0,
    ADD COLUMN answers   bigint NOT NULL DEFAULT 0,
    ADD COLUMN score_sum double precision NOT NULL DEFAULT 0;
