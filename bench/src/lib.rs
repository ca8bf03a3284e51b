//! Helpers shared by Loch's benchmark programs.

pub mod process;
