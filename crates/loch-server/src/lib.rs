//! loch-server
