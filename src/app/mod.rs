//! The application wing, above the engine: one image's run (`explain`), the Score-CAM
//! driver (`scorecam`), the faithfulness metrics (`eval`, and `evaluation` over images), folder runs (`runs`), the output
//! writers (`write`, with `render` for colour maps and overlays), the benchmark (`bench`),
//! the self-test (`check`), the weights hub (`hub`), what a front end settles before its first image (`setup`) and
//! the engine they share (`engine`).

pub mod augment;
pub mod bench;
pub mod check;
pub mod engine;
pub mod eval;
pub mod evaluation;
pub mod explain;
pub mod folder;
pub mod hub;
pub mod record;
pub mod render;
pub mod road;
pub mod runs;
pub mod scorecam;
pub mod setup;
pub mod write;
