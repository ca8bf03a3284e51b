-- Loch metadata store, part 5: when a quiet table is next due for a time-based look (a trigger
-- interval elapses, a block expires); NULL when only a change to the table can give it work.
ALTER TABLE table_runtimes ADD COLUMN due_at BIGINT;

-- Processes run until they have an end time: housekeeping finds the open ones by index.
CREATE INDEX processes_by_end ON processes (finished_at);
