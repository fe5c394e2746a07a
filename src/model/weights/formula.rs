//! The deterministic test network: every expected tensor from the formula of
//! `detweights`, loaded like a file.

use super::detect::LoadOptions;
use super::keys::{Layout, expected};
use super::load::load_with;
use super::network::Weights;
use super::source::{RawTensor, TensorSource};
use crate::error::Result;
use crate::model::config::{Family, ModelCfg, efficientnet};
use crate::model::{detweights, retrieval};

/// The deterministic test network: every expected tensor from the formula.
pub struct Formula {
    tensors: Vec<(String, Vec<usize>)>,
}

impl Formula {
    pub fn new(cfg: &ModelCfg, layout: Layout, n_classes: usize) -> Self {
        Formula {
            tensors: expected(cfg, layout, n_classes),
        }
    }

    /// With visloc's retrieval head too (feature size → the official hidden size).
    pub fn with_retrieval(cfg: &ModelCfg, n_classes: usize) -> Self {
        let mut tensors = expected(cfg, Layout::Visloc, n_classes);
        for (name, shape) in retrieval::tensor_names(cfg.head, retrieval::HIDDEN) {
            tensors.push((name.to_string(), shape));
        }
        Formula { tensors }
    }
}

impl TensorSource for Formula {
    fn describe(&self) -> String {
        "deterministic test weights".into()
    }
    fn names(&self) -> Vec<String> {
        self.tensors.iter().map(|t| t.0.clone()).collect()
    }
    fn shape(&self, name: &str) -> Option<Vec<usize>> {
        self.tensors
            .iter()
            .find(|t| t.0 == name)
            .map(|t| t.1.clone())
    }
    fn get(&self, name: &str) -> Result<Option<RawTensor>> {
        let Some(shape) = self.shape(name) else {
            return Ok(None);
        };
        let data = if name.ends_with("mvmf.mus") {
            detweights::tensor_f64(name, &shape)
        } else {
            detweights::tensor(name, &shape)
                .into_iter()
                .map(|v| v as f64)
                .collect()
        };
        Ok(Some(RawTensor { shape, data }))
    }
    fn get_f32(&self, name: &str) -> Result<Option<RawTensor<f32>>> {
        Ok(self.shape(name).map(|shape| RawTensor {
            data: detweights::tensor(name, &shape),
            shape,
        }))
    }
}

/// The deterministic test network (B`variant`, `n_classes` outputs).
pub fn formula(variant: usize, layout: Layout, n_classes: usize) -> Weights {
    formula_for(efficientnet(variant, layout.family()), layout, n_classes)
}

/// The deterministic test network of any architecture.
pub fn formula_for(cfg: ModelCfg, layout: Layout, n_classes: usize) -> Weights {
    let opts = LoadOptions {
        arch: Some(arch_name(&cfg)),
        preprocessing: None,
        retrieval: false,
    };
    load_with(&Formula::new(&cfg, layout, n_classes), &opts)
        .expect("formula weights match their own architecture")
}

/// The deterministic visloc test network B`variant` with its retrieval head.
pub fn formula_with_retrieval(variant: usize, n_classes: usize) -> Weights {
    let cfg = efficientnet(variant, Family::Visloc);
    let opts = LoadOptions {
        arch: Some(arch_name(&cfg)),
        preprocessing: None,
        retrieval: true,
    };
    load_with(&Formula::with_retrieval(&cfg, n_classes), &opts)
        .expect("formula weights match their own architecture")
}

/// The name `parse_arch` reads back as this configuration.
pub fn arch_name(cfg: &ModelCfg) -> String {
    match cfg.family {
        Family::Visloc => format!("visloc_b{}", cfg.variant),
        Family::Timm => format!("efficientnet_b{}", cfg.variant),
        Family::TimmTf => format!("tf_efficientnet_b{}", cfg.variant),
        Family::Lite => format!("efficientnet_lite{}", cfg.variant),
    }
}
