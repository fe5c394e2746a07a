//! Commands of the binary that have their own module.

pub mod bench;
pub mod evaluate;
