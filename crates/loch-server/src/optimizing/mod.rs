//! Self-optimizing in the server: the optimizer protocol, the management API of groups and
//! processes, and the embedded optimizer threads.

pub mod api;
pub mod embedded;
pub mod protocol;
