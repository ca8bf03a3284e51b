//! loch-sql
