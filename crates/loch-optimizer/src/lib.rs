//! loch-optimizer
