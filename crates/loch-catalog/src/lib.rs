//! loch-catalog
