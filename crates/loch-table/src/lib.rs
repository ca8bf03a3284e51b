//! loch-table
