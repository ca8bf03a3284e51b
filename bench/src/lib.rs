//! Helpers shared by Loch's benchmark programs.

pub mod process;
pub mod table_writes;
