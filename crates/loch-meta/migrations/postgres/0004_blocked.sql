-- Loch metadata store, part 4: why self-optimizing skips a table (files it cannot rewrite yet,
-- or a process that failed), shown by the management API; NULL when it is not blocked.
ALTER TABLE table_runtimes ADD COLUMN blocked TEXT;
