//! SQL over Loch's catalogs (DataFusion): catalog, schema and table providers for Iceberg and
//! Mixed-Iceberg tables, DDL with primary keys, INSERT / upsert / DELETE, terminal sessions.
//!
//! Empty until the SQL terminal issue.
