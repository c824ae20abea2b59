-- What a plan was limited to (a pilot wave, described), kept beside it so that `status` need not
-- read the plans themselves, which run to megabytes for a large instance.
ALTER TABLE migration_plans ADD COLUMN scope TEXT;
