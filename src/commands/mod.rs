//! Commands of the binary that have their own module.

pub mod bench;
pub mod evaluate;
pub mod explain;
pub mod predict;
