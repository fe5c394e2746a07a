//! `combicam-gpu bench`: times per phase (forward, backward, CAM, read-back) and per kernel
//! family, with GFLOP/s and GB/s from the exact work of each dispatch; JSON archive and a
//! side-by-side comparison of runs from different adapters.

use crate::app::engine::Engine;
use crate::cam::methods::Explainer;
use crate::error::{Error, Result};
use crate::gpu::{Dispatch, Gpu};
use crate::model::detweights;
use crate::model::plan::{PlanOptions, Score};
use crate::model::weights::Weights;

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::time::Instant;

mod compare;
mod report;
pub use compare::compare;
use report::stat;
pub use report::{
    BenchReport, Family, ForwardResult, MixedResult, PEAKS, Peak, SizeResult, Slow, Stat, peak_of,
};

/// What `bench` times (the command line's `bench` arguments, resolved).
#[derive(Clone, Debug)]
pub struct BenchOptions {
    /// input sizes (H, W)
    pub sizes: Vec<(usize, usize)>,
    /// explains per timed iteration, back to back through the same plan
    pub repeat: usize,
    /// untimed runs first
    pub warmup: usize,
    /// timed iterations
    pub iters: usize,
    /// write the report as JSON here
    pub json: Option<PathBuf>,
    /// distinct sizes of the folder run timed against one size (0: off)
    pub mixed: usize,
    /// masked copies per batch of the forward-only timing (`PlanOptions::AUTO_BATCH`: the
    /// adapter's default; 0: off)
    pub masked: usize,
    /// time every dispatch alone and keep the N slowest (0: off)
    pub slowest: usize,
}

pub fn parse_size(s: &str) -> Result<(usize, usize)> {
    let bad = || Error::Input(format!("size {s:?} is not HxW (e.g. 300x450)"));
    let (a, b) = s
        .to_lowercase()
        .split_once('x')
        .map(|(a, b)| (a.trim().to_string(), b.trim().to_string()))
        .ok_or_else(bad)?;
    let (h, w) = (
        a.parse::<usize>().map_err(|_| bad())?,
        b.parse::<usize>().map_err(|_| bad())?,
    );
    if h < 8 || w < 8 || h > 4096 || w > 4096 {
        return Err(Error::Input(format!("size {s}: each side must be 8..4096")));
    }
    Ok((h, w))
}

fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| std::env::consts::ARCH.to_string());
    let cores = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(1);
    format!("{cpu}, {cores} cores, {}", std::env::consts::OS)
}

/// Whether per-pass GPU timestamps are trusted. Not on CPU adapters: lavapipe reports near-zero
/// spans for passes that follow a texture-sampling pass (seen with Mesa 22.3), while the wall
/// clock shows the work.
pub fn timestamps_usable(gpu: &Gpu) -> bool {
    gpu.timestamps && !gpu.host_memory()
}

/// Time each group of dispatches as its own compute pass: GPU timestamps where usable
/// (`timestamps_usable`), else one submission per group, timed by the wall clock.
pub fn time_passes(gpu: &Gpu, groups: &[Vec<&Dispatch>]) -> Result<Vec<f64>> {
    if groups.is_empty() {
        // (a query set of no queries is a validation error)
        return Ok(Vec::new());
    }
    if timestamps_usable(gpu) {
        let n = (2 * groups.len()) as u32;
        let qs = gpu.device.create_query_set(&wgpu::QuerySetDescriptor {
            label: Some("bench"),
            ty: wgpu::QueryType::Timestamp,
            count: n,
        });
        let resolve = gpu.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("ts"),
            size: 8 * n as u64,
            usage: wgpu::BufferUsages::QUERY_RESOLVE | wgpu::BufferUsages::COPY_SRC,
            mapped_at_creation: false,
        });
        let staging = gpu.staging("ts", 8 * n as u64);
        let mut enc = gpu.device.create_command_encoder(&Default::default());
        for (i, g) in groups.iter().enumerate() {
            let tw = wgpu::ComputePassTimestampWrites {
                query_set: &qs,
                beginning_of_pass_write_index: Some(2 * i as u32),
                end_of_pass_write_index: Some(2 * i as u32 + 1),
            };
            let mut pass = enc.begin_compute_pass(&wgpu::ComputePassDescriptor {
                label: None,
                timestamp_writes: Some(tw),
            });
            for d in g {
                d.record(&mut pass);
            }
        }
        enc.resolve_query_set(&qs, 0..n, &resolve, 0);
        enc.copy_buffer_to_buffer(&resolve, 0, &staging, 0, 8 * n as u64);
        gpu.queue.submit([enc.finish()]);
        let raw = gpu.read_staging(&staging, 8 * n as u64)?;
        let ts: Vec<u64> = bytemuck::pod_collect_to_vec(&raw);
        let period = gpu.queue.get_timestamp_period() as f64 * 1e-9;
        return Ok((0..groups.len())
            .map(|i| ts[2 * i + 1].saturating_sub(ts[2 * i]) as f64 * period)
            .collect());
    }
    let mut out = Vec::new();
    for g in groups {
        let t = Instant::now();
        gpu.run_now(g)?;
        out.push(t.elapsed().as_secs_f64());
    }
    Ok(out)
}

pub fn run(gpu: std::sync::Arc<Gpu>, w: Weights, a: &BenchOptions) -> Result<BenchReport> {
    if a.iters == 0 || a.repeat == 0 || a.sizes.is_empty() {
        return Err(Error::Input(
            "--iters and --repeat must be at least 1, and --size given at least once".into(),
        ));
    }
    let sizes = &a.sizes;
    let model = w.cfg.name();
    let weights = w.source.clone();
    let mut engine = Engine::new(gpu.clone(), w)?;
    let gpu = &*gpu;
    let nb = engine.blocks();
    let opts = PlanOptions {
        backward: true,
        blocks: (0..nb).collect(),
        explainers: vec![Explainer::COMBICAM],
        masked: 0,
        eigen_smooth: false,
        images: 1,
    };
    let timing = if timestamps_usable(gpu) {
        "gpu-timestamps".to_string()
    } else if gpu.timestamps {
        "wall-clock (CPU adapter: its timestamps are not trusted)".to_string()
    } else {
        "wall-clock (no timestamp queries on this adapter)".to_string()
    };
    let checks = format!("{:?}", gpu.checks).to_lowercase();
    let gemm_kernel = match crate::ops::gemm::Variant::for_adapter(gpu) {
        crate::ops::gemm::Variant::Tiled => {
            let wide = if gpu.slim_wide {
                format!(", SlimWide from K = {}", crate::ops::gemm::SLIM_WIDE_K)
            } else {
                String::new()
            };
            format!("Tiled, Slim from K = {}{wide}", crate::ops::gemm::SLIM_K)
        }
        v if gpu.image_reads => format!("{v:?}, storage-texture reads"),
        v => format!("{v:?}"),
    };
    println!(
        "adapter: {}  driver: {} {}",
        gpu.adapter.line(),
        gpu.adapter.driver,
        gpu.adapter.driver_info
    );
    println!(
        "machine: {}   model: {model} ({weights})   timing: {timing}   shader checks: {checks}   GEMM: {gemm_kernel}",
        machine()
    );
    let mut results = Vec::new();
    for &(h, wd) in sizes {
        let (r, plan_s) = bench_size(&mut engine, &opts, (h, wd), a)?;
        print_size(&r, plan_s, peak_of(&gpu.adapter.name));
        results.push(r);
    }
    let mixed = if a.mixed > 0 {
        Some(mixed(&mut engine, &opts, sizes[0], a.mixed)?)
    } else {
        None
    };
    let forward = if a.masked > 0 {
        Some(forward(&mut engine, sizes[0], a.masked, a.iters)?)
    } else {
        None
    };
    let report = BenchReport {
        schema: "combicam-bench/1".into(),
        adapter: gpu.adapter.clone(),
        machine: machine(),
        timing,
        shader_checks: Some(checks),
        gemm_kernel: Some(gemm_kernel),
        model,
        weights,
        iters: a.iters,
        results,
        mixed,
        forward,
    };
    if let Some(p) = &a.json {
        let bytes = serde_json::to_vec_pretty(&report).map_err(|e| Error::output(p, e))?;
        crate::app::render::write_bytes_atomic(&bytes, p)?;
        println!("wrote {}", p.display());
    }
    Ok(report)
}

/// One input size: the plan's build, `warmup` runs, then `iters` timings of `repeat` runs
/// each, and the phases and kernel families timed as passes of their own. Returns the
/// result and the plan's build time.
fn bench_size(
    engine: &mut Engine,
    opts: &PlanOptions,
    (h, wd): (usize, usize),
    a: &BenchOptions,
) -> Result<(SizeResult, f64)> {
    let gpu = engine.gpu.clone();
    let gpu = &*gpu;
    let x = detweights::input(h, wd);
    let t = Instant::now();
    engine.plan(h, wd, opts)?;
    let plan_s = t.elapsed().as_secs_f64();
    for _ in 0..a.warmup {
        engine.run(&x, h, wd, opts, None, Score::Prob)?;
    }
    let mut explain = Vec::new();
    let mut readback = Vec::new();
    for _ in 0..a.iters {
        let t = Instant::now();
        for _ in 0..a.repeat {
            let o = engine.run(&x, h, wd, opts, None, Score::Prob)?;
            readback.push(o.readback_seconds);
        }
        explain.push(t.elapsed().as_secs_f64() / a.repeat as f64);
    }
    let gpu_bytes = engine.gpu_bytes();
    let macs = engine.model.weights.cfg.macs(h, wd);
    let plan = engine.plan(h, wd, opts)?;
    let phase_groups: Vec<Vec<&Dispatch>> = plan
        .phases
        .iter()
        .map(|p| p.dispatches.iter().collect())
        .collect();
    let mut fams: BTreeMap<&str, Vec<&Dispatch>> = BTreeMap::new();
    for p in &plan.phases {
        for d in &p.dispatches {
            fams.entry(d.family).or_default().push(d);
        }
    }
    let fam_groups: Vec<Vec<&Dispatch>> = fams.values().cloned().collect();
    // with --slowest, every dispatch its own group
    let one_groups: Vec<Vec<&Dispatch>> = match a.slowest {
        0 => Vec::new(),
        _ => plan
            .phases
            .iter()
            .flat_map(|p| &p.dispatches)
            .map(|d| vec![d])
            .collect(),
    };
    let mut one_t: Vec<Vec<f64>> = vec![Vec::new(); one_groups.len()];
    let mut phase_t: Vec<Vec<f64>> = vec![Vec::new(); phase_groups.len()];
    let mut fam_t: Vec<Vec<f64>> = vec![Vec::new(); fam_groups.len()];
    for _ in 0..a.iters {
        for (i, v) in time_passes(gpu, &phase_groups)?.into_iter().enumerate() {
            phase_t[i].push(v);
        }
        for (i, v) in time_passes(gpu, &fam_groups)?.into_iter().enumerate() {
            fam_t[i].push(v);
        }
        for (i, v) in time_passes(gpu, &one_groups)?.into_iter().enumerate() {
            one_t[i].push(v);
        }
    }
    let mut slowest: Vec<Slow> = one_groups
        .iter()
        .zip(&one_t)
        .map(|(g, t)| {
            let f = family(g[0].family, g, t);
            Slow {
                label: g[0].label.clone(),
                family: f.family,
                time: f.time,
                gflops_per_s: f.gflops_per_s,
                gb_per_s: f.gb_per_s,
            }
        })
        .collect();
    slowest.sort_by(|a, b| b.time.median_ms.total_cmp(&a.time.median_ms));
    slowest.truncate(a.slowest);
    gpu.check_errors("bench")?;
    let mut phases = BTreeMap::new();
    let mut phase_dispatches = BTreeMap::new();
    for (p, t) in plan.phases.iter().zip(&phase_t) {
        phases.insert(p.name.to_string(), stat(t));
        phase_dispatches.insert(p.name.to_string(), p.dispatches.len());
    }
    phases.insert("readback".into(), stat(&readback));
    let families: Vec<Family> = fams
        .iter()
        .zip(&fam_t)
        .map(|((name, ds), t)| family(name, ds, t))
        .collect();
    let r = SizeResult {
        size: [h, wd],
        repeat: a.repeat,
        explain: stat(&explain),
        phases,
        phase_dispatches,
        families,
        peak_gpu_bytes: gpu_bytes,
        dispatches: plan.dispatch_count(),
        forward_gflop: 2.0 * macs / 1e9,
        slowest,
    };
    Ok((r, plan_s))
}

/// A kernel family's timings `t` (ms per pass) with the work of its dispatches `ds`.
fn family(name: &str, ds: &[&Dispatch], t: &[f64]) -> Family {
    let st = stat(t);
    let gflop = ds.iter().map(|d| d.flops).sum::<f64>() / 1e9;
    let gbytes = ds.iter().map(|d| d.bytes).sum::<f64>() / 1e9;
    let s = st.median_ms / 1e3;
    Family {
        family: name.to_string(),
        dispatches: ds.len(),
        gflop,
        gbytes,
        gflops_per_s: gflop / s,
        gb_per_s: gbytes / s,
        time: st,
    }
}

/// `--masked N`: forward passes one per submission, then masked copies in batches of N (or
/// of what the plan fits: `Plan::masked_copies`; `PlanOptions::AUTO_BATCH`: the default).
fn forward(
    engine: &mut Engine,
    (h, w): (usize, usize),
    n: usize,
    iters: usize,
) -> Result<ForwardResult> {
    let opts = PlanOptions::forward(n);
    let x = detweights::input(h, w);
    let gpu = engine.gpu.clone();
    let gpu = &*gpu;
    let per_copy_bytes = crate::model::plan::Plan::bytes_per_copy(gpu, &engine.model, h, w);
    let plan = engine.plan(h, w, &opts)?;
    let n = plan.masked_copies();
    let o = plan.run(gpu, &x, None, Score::Prob)?;
    let mut single = Vec::new();
    for _ in 0..iters.max(3) {
        let t = Instant::now();
        plan.run(gpu, &x, None, Score::Prob)?;
        single.push(t.elapsed().as_secs_f64());
    }
    // deletion masks at n steps: one batch of n copies, one submission
    let rank: Vec<u32> = (0..(h * w) as u32).collect();
    let counts: Vec<usize> = (0..n).map(|i| i * h * w / n).collect();
    let masks = crate::model::plan::Masks::Deletion {
        rank: &rank,
        counts: &counts,
    };
    plan.run_masked(gpu, &masks, o.argmax, &mut |_| {})?;
    let mut per_copy = Vec::new();
    for _ in 0..iters.max(3) {
        let t = Instant::now();
        plan.run_masked(gpu, &masks, o.argmax, &mut |_| {})?;
        per_copy.push(t.elapsed().as_secs_f64() / n as f64);
    }
    let r = ForwardResult {
        size: [h, w],
        single: stat(&single),
        copies_per_submission: n,
        masked_per_copy: stat(&per_copy),
        bytes_per_copy: per_copy_bytes,
    };
    println!(
        "\nforward alone at {h}×{w}: {:.1} ms one per submission; {:.1} ms per masked copy in batches of {n} ({:.1} images/s, {:.0} MiB of GPU memory per copy)",
        r.single.median_ms,
        r.masked_per_copy.median_ms,
        1000.0 / r.masked_per_copy.median_ms,
        r.bytes_per_copy as f64 / 1048576.0
    );
    Ok(r)
}

/// `--mixed N`: N images at `base`, then N images of N distinct widths around it, ascending.
fn mixed(
    engine: &mut Engine,
    opts: &PlanOptions,
    base: (usize, usize),
    n: usize,
) -> Result<MixedResult> {
    let (h, w) = base;
    let step = (w / 45).max(1) as isize;
    let sizes: Vec<(usize, usize)> = (0..n as isize)
        .map(|k| {
            (
                h,
                (w as isize + step * (2 * k - n as isize) / 2).max(8) as usize,
            )
        })
        .collect();
    let time = |engine: &mut Engine, list: &[(usize, usize)]| -> Result<(Vec<f64>, Vec<f64>)> {
        let (mut wall, mut plan) = (Vec::new(), Vec::new());
        for &(h, w) in list {
            let x = detweights::input(h, w);
            let t = Instant::now();
            engine.run(&x, h, w, opts, None, Score::Prob)?;
            wall.push(t.elapsed().as_secs_f64());
            plan.push(engine.last_plan_build_s);
        }
        Ok((wall, plan))
    };
    time(engine, &[base])?;
    let (same, _) = time(engine, &vec![base; n])?;
    let same_gpu_bytes = engine.gpu_bytes();
    let (mixed, plan) = time(engine, &sizes)?;
    let r = MixedResult {
        base: [h, w],
        sizes: sizes.iter().map(|&(h, w)| [h, w]).collect(),
        same: stat(&same),
        mixed: stat(&mixed),
        plan_build: stat(&plan),
        same_gpu_bytes,
        mixed_gpu_bytes: engine.gpu_bytes(),
    };
    let mean = |v: &[f64]| v.iter().sum::<f64>() / v.len() as f64;
    println!(
        "\n{n} images of {n} sizes ({}×{} … {}×{}) against {n} of {h}×{w}, one engine:",
        sizes[0].0,
        sizes[0].1,
        sizes[n - 1].0,
        sizes[n - 1].1
    );
    println!(
        "  per image  {:>9.1} ms mean against {:.1} ms ({:.3}×); a new size's plan {:.1} ms median",
        mean(&mixed) * 1e3,
        mean(&same) * 1e3,
        mean(&mixed) / mean(&same),
        r.plan_build.median_ms
    );
    println!(
        "  GPU memory {:>9.1} MiB against {:.1} MiB ({:.3}×)",
        r.mixed_gpu_bytes as f64 / 1048576.0,
        same_gpu_bytes as f64 / 1048576.0,
        r.mixed_gpu_bytes as f64 / same_gpu_bytes as f64
    );
    Ok(r)
}

fn print_size(r: &SizeResult, plan_s: f64, peak: Option<&Peak>) {
    println!(
        "\n{}×{}: explain {:.1} ms median (min {:.1}, max {:.1}), {} dispatches, GPU memory {:.1} MiB, plan built in {:.2}s",
        r.size[0],
        r.size[1],
        r.explain.median_ms,
        r.explain.min_ms,
        r.explain.max_ms,
        r.dispatches,
        r.peak_gpu_bytes as f64 / 1048576.0,
        plan_s
    );
    println!("  {:<10} {:>5} {:>10}", "phase", "n", "ms");
    for (k, s) in &r.phases {
        let n = r
            .phase_dispatches
            .get(k)
            .map_or("".into(), |n| n.to_string());
        println!(
            "  {k:<10} {n:>5} {:>10.2}  (min {:.2}, max {:.2})",
            s.median_ms, s.min_ms, s.max_ms
        );
    }
    let of_peak = |v: f64, p: f64| format!(" {:>5.1}%", 100.0 * v / p);
    println!(
        "  {:<10} {:>5} {:>10} {:>9} {:>9}{} {:>9}{}",
        "family",
        "n",
        "ms",
        "GFLOP",
        "GFLOP/s",
        if peak.is_some() { "   peak" } else { "" },
        "GB/s",
        if peak.is_some() { "   peak" } else { "" }
    );
    for f in &r.families {
        let (fp, bp) = peak.map_or((String::new(), String::new()), |p| {
            (
                of_peak(f.gflops_per_s, p.tflops * 1e3),
                of_peak(f.gb_per_s, p.tb_per_s * 1e3),
            )
        });
        println!(
            "  {:<10} {:>5} {:>10.2} {:>9.3} {:>9.2}{fp} {:>9.2}{bp}",
            f.family, f.dispatches, f.time.median_ms, f.gflop, f.gflops_per_s, f.gb_per_s
        );
    }
    if let Some(p) = peak {
        println!(
            "  (peak: the {}'s published {} TFLOP/s FP32 without tensor cores and {} TB/s)",
            p.name, p.tflops, p.tb_per_s
        );
    }
    let phases: f64 = r.phases.values().map(|s| s.median_ms).sum();
    let families: f64 = r.families.iter().map(|f| f.time.median_ms).sum();
    println!(
        "  (sums: phases {phases:.1} ms, families {families:.1} ms; explain {:.1} ms. They differ by design: \
         explain is the wall clock of the whole job (upload, one submission, read-back), what you wait; \
         each phase is timed alone, and each family's dispatches alone back to back outside their \
         order, by GPU timestamps or, on CPU adapters, by the wall clock of one submission each, \
         which adds a submit-and-wait per row)",
        r.explain.median_ms
    );
    if !r.slowest.is_empty() {
        println!("  the {} slowest dispatches, each alone:", r.slowest.len());
        for d in &r.slowest {
            println!(
                "  {:>9.3} ms  {:<10} {:>9.1} GFLOP/s {:>8.1} GB/s  {}",
                d.time.median_ms, d.family, d.gflops_per_s, d.gb_per_s, d.label
            );
        }
    }
}
