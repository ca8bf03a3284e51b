//! loch-optimizing
