//! The loaded network: every convolution with BN folded in, the classifier and what its
//! outputs mean.

use super::keys::Layout;
use crate::model::config::ModelCfg;
use crate::model::retrieval;
use crate::preprocess::Preprocessing;

/// A convolution with BN folded in: w (Cout, Cin·k·k), b (Cout).
#[derive(Clone, Debug)]
pub struct Conv {
    pub w: Vec<f32>,
    pub b: Vec<f32>,
}

#[derive(Clone, Debug)]
pub struct BlockWeights {
    pub expand: Option<Conv>,
    pub dw: Conv,
    /// SE reduce (CSE, CMID) and expand (CMID, CSE), with their biases; None for Lite
    pub se: Option<(Conv, Conv)>,
    pub project: Conv,
}

/// What the classifier's outputs mean.
#[derive(Clone, Debug)]
pub enum HeadKind {
    /// visloc cells with their centres (degrees)
    Geo { lat: Vec<f64>, lon: Vec<f64> },
    /// ImageNet classes
    Labels(Vec<String>),
}

#[derive(Clone, Debug)]
pub struct Classifier {
    pub n: usize,
    /// (N, K)
    pub w: Vec<f32>,
    pub b: Vec<f32>,
    pub kind: HeadKind,
}

#[derive(Clone, Debug)]
pub struct Weights {
    pub cfg: ModelCfg,
    pub layout: Layout,
    pub stem: Conv,
    pub blocks: Vec<BlockWeights>,
    pub head_conv: Conv,
    pub classifier: Classifier,
    /// where they came from, for messages
    pub source: String,
    /// what the user should know about how the file was read (printed once on stderr)
    pub notes: Vec<String>,
    /// how photos are turned into the model's input
    pub preprocessing: Preprocessing,
    /// visloc's retrieval head, when loaded (`LoadOptions::retrieval`)
    pub retrieval: Option<std::sync::Arc<retrieval::RetrievalWeights>>,
}
