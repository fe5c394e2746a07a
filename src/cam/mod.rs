//! The CAM math, below the plan that records it: the methods, one module per family, each
//! with its GPU launchers and its CPU reference (`channel`: a weight per channel;
//! `elementwise`: a weight per element; `eigen`: the first principal component; `fusion`: the rules that fuse blocks), `methods`
//! (the catalogue) and `phase` (the CAM phase a plan records). Running plans on images and
//! writing the results is the application's (`app`).

pub mod channel;
pub mod eigen;
pub mod elementwise;
pub mod fullgrad;
pub mod fusion;
pub mod methods;
pub mod phase;
