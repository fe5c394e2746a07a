//! `combicam-gpu bench`: its arguments, turned into the library's `bench::BenchOptions`.

use anyhow::bail;
use clap::{Args, Subcommand};
use combicam_gpu::app::bench::{self, BenchOptions};
use combicam_gpu::model::plan::PlanOptions;
use std::path::PathBuf;

#[derive(Args, Debug)]
#[command(args_conflicts_with_subcommands = true)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub cmd: Option<BenchCmd>,
    /// Input sizes HxW (repeatable).
    #[arg(long = "size", default_values_t = vec!["300x450".to_string(), "380x380".to_string()])]
    pub sizes: Vec<String>,
    /// A first look in under a minute (on software Vulkan too): the first --size only, one
    /// timed iteration, no --mixed and no --masked runs.
    #[arg(long)]
    pub quick: bool,
    /// Explains per timed iteration, run back to back through the same plan (the figures are
    /// per explain). Not `explain --batch`, which sets Score-CAM's masked copies.
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub repeat: usize,
    /// Untimed runs first.
    #[arg(long, default_value_t = 1)]
    pub warmup: usize,
    /// Timed iterations.
    #[arg(long, default_value_t = 5)]
    pub iters: usize,
    /// Write all results as JSON here.
    #[arg(long, value_name = "FILE")]
    pub json: Option<PathBuf>,
    /// Real weights instead of the random test network.
    #[arg(long, value_name = "FILE")]
    pub weights: Option<PathBuf>,
    /// Variant of the random test network.
    #[arg(long, default_value = "b4")]
    pub variant: String,
    /// Cells of the random test network's head.
    #[arg(long, default_value_t = 31145)]
    pub cells: usize,
    /// Adapter index (see `combicam-gpu devices`).
    #[arg(long)]
    pub device: Option<usize>,
    /// Also time a folder's worth of N distinct sizes around the first --size (its width
    /// stepped by 1/45, ascending) against N images of that size, on one engine: the cost of
    /// photos of every aspect ratio, in time and GPU memory. 0: off.
    #[arg(long, value_name = "N", default_value_t = 12)]
    pub mixed: usize,
    /// Also time forward passes alone at the first --size: one at a time, and as masked copies
    /// N per batch (what Score-CAM and `evaluate` run; default: the batch they use on this
    /// adapter). 0: off.
    #[arg(long, value_name = "N")]
    pub masked: Option<usize>,
    /// Also time every dispatch of the explain alone and list the N slowest (label, kernel
    /// family, time, rates): where a family's time goes. 0: off.
    #[arg(long, value_name = "N", default_value_t = 0)]
    pub slowest: usize,
}

#[derive(Subcommand, Debug)]
pub enum BenchCmd {
    /// Print several `bench --json` files (or `benches/pytorch_reference.py --json`) side by
    /// side, one column per run: each run's adapter and machine, then explain, phase and
    /// kernel-family times and rates, row by row.
    Compare {
        /// The JSON files, one column each, in this order (e.g. benches/results/*.json).
        #[arg(required = true, value_name = "FILE")]
        files: Vec<PathBuf>,
    },
}

impl BenchArgs {
    /// The library's options; `--quick` overrides what it names.
    pub fn options(&self) -> anyhow::Result<BenchOptions> {
        let mut sizes = self
            .sizes
            .iter()
            .map(|s| bench::parse_size(s))
            .collect::<Result<Vec<_>, _>>()?;
        if sizes.is_empty() {
            bail!("--size: give at least one size HxW, e.g. --size 300x450");
        }
        if self.quick {
            sizes.truncate(1);
        }
        let q = self.quick;
        Ok(BenchOptions {
            sizes,
            repeat: self.repeat,
            warmup: self.warmup,
            iters: if q { 1 } else { self.iters },
            json: self.json.clone(),
            mixed: if q { 0 } else { self.mixed },
            slowest: self.slowest,
            masked: match (q, self.masked) {
                (true, _) => 0,
                (false, m) => m.unwrap_or(PlanOptions::AUTO_BATCH),
            },
        })
    }
}
