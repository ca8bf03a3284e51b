//! The optimizer worker: executes rewrite tasks (reads input files with deletes applied,
//! writes target-sized files) and speaks the optimizer protocol to the server over HTTP. It
//! runs embedded in `loch serve` or as `loch optimizer`, and never depends on the server or the
//! metadata store.
//!
//! Empty until the self-optimizing issue.
