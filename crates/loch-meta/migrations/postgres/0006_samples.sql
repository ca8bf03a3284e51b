-- Loch metadata store, part 6: the totals of every table (bytes, files) sampled by the server
-- once a minute and kept 7 days, for the dashboard's charts; they outlive restarts.
CREATE TABLE totals_samples (
    at BIGINT PRIMARY KEY,
    bytes BIGINT NOT NULL,
    files BIGINT NOT NULL
);
