-- Loch metadata store, part 2: self-optimizing (and, later, maintenance) state.

-- A pool of optimizer threads and how tables share it.
CREATE TABLE optimizer_groups (
    name        TEXT    PRIMARY KEY,
    properties  TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL,
    updated_at  BIGINT  NOT NULL
);

-- Registered optimizers: external `loch optimizer` processes and the server's embedded threads.
CREATE TABLE optimizers (
    token          TEXT    PRIMARY KEY,
    group_name     TEXT    NOT NULL,
    kind           TEXT    NOT NULL,
    threads        BIGINT  NOT NULL,
    memory_mb      BIGINT  NOT NULL,
    properties     TEXT    NOT NULL,
    registered_at  BIGINT  NOT NULL,
    touched_at     BIGINT  NOT NULL
);
CREATE INDEX optimizers_by_group ON optimizers (group_name);

-- The self-optimizing state of each table.
CREATE TABLE table_runtimes (
    table_id               BIGINT  PRIMARY KEY REFERENCES tables (id) ON DELETE CASCADE,
    group_name             TEXT    NOT NULL,
    status                 TEXT    NOT NULL,
    status_since           BIGINT  NOT NULL,
    process_id             BIGINT,
    last_evaluated_snapshot BIGINT,
    last_minor_at          BIGINT,
    last_major_at          BIGINT,
    last_full_at           BIGINT,
    last_plan_at           BIGINT,
    pending_input          TEXT,
    summary                TEXT,
    updated_at             BIGINT  NOT NULL
);
CREATE INDEX table_runtimes_by_group ON table_runtimes (group_name, status);

-- Processes on tables: optimizing now, maintenance actions later.
CREATE TABLE processes (
    id                  BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    table_id            BIGINT  NOT NULL REFERENCES tables (id) ON DELETE CASCADE,
    kind                TEXT    NOT NULL,
    process_type        TEXT    NOT NULL,
    status              TEXT    NOT NULL,
    group_name          TEXT    NOT NULL,
    target_snapshot_id  BIGINT,
    created_at          BIGINT  NOT NULL,
    finished_at         BIGINT,
    fail_message        TEXT,
    summary             TEXT    NOT NULL
);
CREATE INDEX processes_by_table ON processes (table_id, id);
CREATE INDEX processes_by_status ON processes (status);

-- Tasks of processes; `attempt` counts hand-outs, so a stale completion is recognized.
CREATE TABLE tasks (
    process_id       BIGINT  NOT NULL REFERENCES processes (id) ON DELETE CASCADE,
    task_id          BIGINT  NOT NULL,
    status           TEXT    NOT NULL,
    attempt          BIGINT  NOT NULL,
    retries          BIGINT  NOT NULL,
    partition_name   TEXT    NOT NULL,
    input            TEXT    NOT NULL,
    output           TEXT,
    optimizer_token  TEXT,
    thread_id        BIGINT,
    status_since     BIGINT  NOT NULL,
    started_at       BIGINT,
    finished_at      BIGINT,
    cost_ms          BIGINT  NOT NULL,
    fail_reason      TEXT,
    input_files      BIGINT  NOT NULL,
    input_bytes      BIGINT  NOT NULL,
    output_files     BIGINT  NOT NULL,
    output_bytes     BIGINT  NOT NULL,
    PRIMARY KEY (process_id, task_id)
);
CREATE INDEX tasks_by_status ON tasks (status, process_id);

-- Execution windows of task attempts that ended, for quota accounting over the last hour.
CREATE TABLE task_runs (
    process_id  BIGINT  NOT NULL,
    task_id     BIGINT  NOT NULL,
    attempt     BIGINT  NOT NULL,
    table_id    BIGINT  NOT NULL,
    started_at  BIGINT  NOT NULL,
    ended_at    BIGINT  NOT NULL,
    PRIMARY KEY (process_id, task_id, attempt)
);
CREATE INDEX task_runs_by_table ON task_runs (table_id, ended_at);
