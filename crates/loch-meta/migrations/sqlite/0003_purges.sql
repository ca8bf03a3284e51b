-- Loch metadata store, part 3: purges of dropped tables, and locations in canonical form.

-- A table dropped with purgeRequested leaves a row here in the same transaction as its table row
-- goes; a background worker deletes the files under `location` and then the row, so a restart
-- finishes an interrupted purge. While the row exists its location counts as taken.
CREATE TABLE purges (
    id                 INTEGER PRIMARY KEY AUTOINCREMENT,
    catalog_id         BIGINT  NOT NULL REFERENCES catalogs (id) ON DELETE RESTRICT,
    table_name         TEXT    NOT NULL,
    location           TEXT    NOT NULL,
    metadata_location  TEXT    NOT NULL,
    attempts           BIGINT  NOT NULL DEFAULT 0,
    last_error         TEXT,
    created_at         BIGINT  NOT NULL,
    updated_at         BIGINT  NOT NULL
);

-- Locations are compared in one spelling: s3a:// and s3n:// are s3://.
UPDATE tables SET location = 's3://' || substr(location, 7) WHERE location LIKE 's3a://%' OR location LIKE 's3n://%';
