//! What `bench` measures and archives (`bench --json`): per input size, per phase and per
//! kernel family, with the adapter and the machine.

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Stat {
    pub median_ms: f64,
    pub min_ms: f64,
    pub max_ms: f64,
}

pub(super) fn stat(v: &[f64]) -> Stat {
    let mut s = v.to_vec();
    s.sort_by(|a, b| a.partial_cmp(b).unwrap());
    let ms = |x: f64| x * 1e3;
    Stat {
        median_ms: ms(s[s.len() / 2]),
        min_ms: ms(s[0]),
        max_ms: ms(*s.last().unwrap()),
    }
}

/// One dispatch timed alone (`bench --slowest`).
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Slow {
    pub label: String,
    pub family: String,
    pub time: Stat,
    pub gflops_per_s: f64,
    pub gb_per_s: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct Family {
    pub family: String,
    pub dispatches: usize,
    pub time: Stat,
    pub gflop: f64,
    pub gbytes: f64,
    pub gflops_per_s: f64,
    pub gb_per_s: f64,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct SizeResult {
    pub size: [usize; 2],
    /// explains per timed iteration (`--repeat`; archives before it was renamed say `batch`)
    #[serde(alias = "batch")]
    pub repeat: usize,
    /// wall clock of one explain (upload, one submission, read-back), per image
    pub explain: Stat,
    pub phases: BTreeMap<String, Stat>,
    /// dispatches per phase (archives from before it was recorded have none)
    #[serde(default)]
    pub phase_dispatches: BTreeMap<String, usize>,
    pub families: Vec<Family>,
    pub peak_gpu_bytes: u64,
    pub dispatches: usize,
    pub forward_gflop: f64,
    /// the slowest dispatches, each timed alone (`bench --slowest`; empty without it)
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub slowest: Vec<Slow>,
}

#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct BenchReport {
    pub schema: String,
    pub adapter: crate::gpu::AdapterSummary,
    pub machine: String,
    /// "gpu-timestamps" or "wall-clock (no timestamp queries on this adapter)"
    pub timing: String,
    /// the kernels' run-time guards (`$COMBICAM_SHADER_CHECKS`: full, bounds or none); absent
    /// in reports from before it could be chosen (full)
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub shader_checks: Option<String>,
    /// the GEMM kernel the adapter's explain runs (`gemm::Variant`, e.g. `RegsSubgroup`, with
    /// ", storage-texture reads" where the CPU-shaped kernels read so: `Gpu::image_reads`);
    /// absent in reports from before it was recorded
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub gemm_kernel: Option<String>,
    pub model: String,
    pub weights: String,
    pub iters: usize,
    pub results: Vec<SizeResult>,
    /// `--mixed`: distinct sizes against one size
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub mixed: Option<MixedResult>,
    /// `--masked`: forward passes alone
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub forward: Option<ForwardResult>,
}

/// Forward passes alone (no backward), per image: one per submission with its read-back of
/// every output, and as masked copies several per submission keeping one score each.
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct ForwardResult {
    pub size: [usize; 2],
    pub single: Stat,
    pub copies_per_submission: usize,
    pub masked_per_copy: Stat,
    /// GPU memory each copy of the batch takes (`Plan::bytes_per_copy`; absent in runs
    /// archived before it was recorded)
    #[serde(default)]
    pub bytes_per_copy: u64,
}

/// N images of N distinct sizes against N images of one size, run after them on the same
/// engine (so the distinct sizes take back the first plan's memory, as in a real folder).
#[derive(Serialize, Deserialize, Clone, Debug)]
pub struct MixedResult {
    pub base: [usize; 2],
    pub sizes: Vec<[usize; 2]>,
    /// wall clock per image (plan recording included), at the base size
    pub same: Stat,
    /// wall clock per image, one new size each
    pub mixed: Stat,
    /// recording the plan again for each new size
    pub plan_build: Stat,
    pub same_gpu_bytes: u64,
    pub mixed_gpu_bytes: u64,
}

/// A GPU's published FP32 peak (non-tensor) and memory bandwidth, matched by whole words of its
/// adapter name: what `bench` sets each family's rates against.
pub struct Peak {
    pub name: &'static str,
    pub tflops: f64,
    pub tb_per_s: f64,
}

/// Vendor data sheets (FP32 without tensor cores; SXM parts where there are several, the PCIe H100
/// named apart). The first row that matches is taken, so a longer name comes before its prefix.
pub const PEAKS: &[Peak] = &[
    Peak {
        name: "H100 PCIe",
        tflops: 51.2,
        tb_per_s: 2.0,
    },
    Peak {
        name: "H200",
        tflops: 67.0,
        tb_per_s: 4.8,
    },
    Peak {
        name: "H100",
        tflops: 67.0,
        tb_per_s: 3.35,
    },
    Peak {
        name: "A100",
        tflops: 19.5,
        tb_per_s: 2.04,
    },
    Peak {
        name: "L4",
        tflops: 30.3,
        tb_per_s: 0.30,
    },
    Peak {
        name: "T4",
        tflops: 8.1,
        tb_per_s: 0.32,
    },
    Peak {
        name: "RTX 5090",
        tflops: 104.8,
        tb_per_s: 1.79,
    },
    Peak {
        name: "RTX 4090",
        tflops: 82.6,
        tb_per_s: 1.01,
    },
    Peak {
        name: "RTX 3090",
        tflops: 35.6,
        tb_per_s: 0.94,
    },
];

/// The peak figures of the adapter called `name`, when known.
pub fn peak_of(name: &str) -> Option<&'static Peak> {
    PEAKS.iter().find(|p| {
        name.split(|c: char| !c.is_ascii_alphanumeric())
            .collect::<Vec<_>>()
            .windows(p.name.split(' ').count())
            .any(|w| w.join(" ") == p.name)
    })
}
