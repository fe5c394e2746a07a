//! Typed errors of the library. Every message names the problem and the next step.

use std::path::Path;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The image could not be read or decoded.
    #[error("cannot use image {path}: {reason}")]
    Image { path: String, reason: String },
    /// The weights file is missing, truncated or does not match the model.
    #[error("weights file {path}: {reason}")]
    Weights { path: String, reason: String },
    /// No usable GPU adapter, or the adapter refused what we asked.
    #[error("{0}")]
    Gpu(String),
    /// A bad argument or an input the engine cannot handle.
    #[error("{0}")]
    Input(String),
    /// An output could not be written.
    #[error("cannot write {path}: {reason}")]
    Output { path: String, reason: String },
}

impl Error {
    pub fn image(path: &Path, reason: impl std::fmt::Display) -> Self {
        Error::Image {
            path: path.display().to_string(),
            reason: reason.to_string(),
        }
    }
    pub fn weights(path: impl std::fmt::Display, reason: impl std::fmt::Display) -> Self {
        Error::Weights {
            path: path.to_string(),
            reason: reason.to_string(),
        }
    }
    pub fn output(path: &Path, reason: impl std::fmt::Display) -> Self {
        Error::Output {
            path: path.display().to_string(),
            reason: reason.to_string(),
        }
    }
}

pub type Result<T, E = Error> = std::result::Result<T, E>;
