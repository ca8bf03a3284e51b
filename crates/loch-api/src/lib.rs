//! loch-api
