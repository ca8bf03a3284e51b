-- Loch metadata store, part 1: catalogs, namespaces, tables and views, auth tokens.
-- Times are milliseconds since the Unix epoch; property maps are JSON objects of strings.

CREATE TABLE catalogs (
    id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    name        TEXT    NOT NULL UNIQUE,
    kind        TEXT    NOT NULL,
    properties  TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);

-- A namespace's name is its levels joined by U+001F; `parent` is the parent's name ('' at the top).
CREATE TABLE namespaces (
    id          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    catalog_id  BIGINT  NOT NULL REFERENCES catalogs (id) ON DELETE CASCADE,
    name        TEXT    NOT NULL,
    parent      TEXT    NOT NULL,
    properties  TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL,
    UNIQUE (catalog_id, name)
);
CREATE INDEX namespaces_by_parent ON namespaces (catalog_id, parent, name);

-- Tables and views share one name space per namespace, as the Iceberg REST spec requires.
-- `version` is the compare-and-swap counter of the metadata pointer; the statistics columns
-- are copied from the current snapshot at every commit so listings never read metadata files.
CREATE TABLE tables (
    id                          BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    catalog_id                  BIGINT  NOT NULL REFERENCES catalogs (id) ON DELETE RESTRICT,
    namespace_id                BIGINT  NOT NULL REFERENCES namespaces (id) ON DELETE RESTRICT,
    name                        TEXT    NOT NULL,
    kind                        TEXT    NOT NULL,
    format                      TEXT    NOT NULL,
    uuid                        TEXT    NOT NULL,
    location                    TEXT    NOT NULL,
    metadata_location           TEXT    NOT NULL,
    previous_metadata_location  TEXT,
    version                     BIGINT  NOT NULL,
    snapshot_id                 BIGINT,
    data_files                  BIGINT  NOT NULL DEFAULT 0,
    delete_files                BIGINT  NOT NULL DEFAULT 0,
    total_size                  BIGINT  NOT NULL DEFAULT 0,
    total_records               BIGINT  NOT NULL DEFAULT 0,
    last_commit_ms              BIGINT,
    created_at                  BIGINT  NOT NULL,
    updated_at                  BIGINT  NOT NULL,
    UNIQUE (namespace_id, name)
);
CREATE INDEX tables_by_catalog ON tables (catalog_id, kind);

-- Bearer tokens handed out by the OAuth2 token endpoint; only a SHA-256 of each token is kept.
CREATE TABLE auth_tokens (
    token_hash  TEXT    PRIMARY KEY,
    client_id   TEXT    NOT NULL,
    issued_at   BIGINT  NOT NULL,
    expires_at  BIGINT  NOT NULL
);
CREATE INDEX auth_tokens_by_expiry ON auth_tokens (expires_at);
