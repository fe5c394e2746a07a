//! `bench compare`: archived `bench --json` runs side by side, one column per file.

use super::report::{BenchReport, ForwardResult, MixedResult, SizeResult};
use crate::error::{Error, Result};
use std::path::PathBuf;

/// Side by side: one column per file.
pub fn compare(files: &[PathBuf]) -> Result<()> {
    let mut reps = Vec::new();
    for f in files {
        let s = std::fs::read_to_string(f)
            .map_err(|e| Error::Input(format!("cannot read {}: {e}", f.display())))?;
        let r: BenchReport = serde_json::from_str(&s).map_err(|e| {
            Error::Input(format!("{} is not a `bench --json` file: {e}", f.display()))
        })?;
        reps.push(r);
    }
    let w = 28;
    print!("{:<26}", "");
    for r in &reps {
        print!(" {:>w$}", truncate(&r.adapter.name, w));
    }
    println!();
    print!("{:<26}", "");
    for r in &reps {
        print!(
            " {:>w$}",
            truncate(
                &format!("{} · {}", r.adapter.backend, r.adapter.device_type),
                w
            )
        );
    }
    println!();
    let mut sizes: Vec<[usize; 2]> = reps
        .iter()
        .flat_map(|r| r.results.iter().map(|s| s.size))
        .collect();
    sizes.sort();
    sizes.dedup();
    for size in sizes {
        let rows: Vec<Option<&SizeResult>> = reps
            .iter()
            .map(|r| r.results.iter().find(|s| s.size == size))
            .collect();
        let line = |name: String, f: &dyn Fn(&SizeResult) -> Option<f64>| {
            print!("{name:<26}");
            for r in &rows {
                match r.and_then(f) {
                    Some(v) => print!(" {:>w$.2}", v),
                    None => print!(" {:>w$}", "-"),
                }
            }
            println!();
        };
        println!("{}×{}", size[0], size[1]);
        line("  explain ms".into(), &|s| Some(s.explain.median_ms));
        // relative to the first file that has this size
        let first = rows.iter().flatten().next().map(|s| s.explain.median_ms);
        line("  explain / first column".into(), &|s| {
            first.map(|f| s.explain.median_ms / f)
        });
        for ph in ["forward", "backward", "cam", "readback"] {
            line(format!("  {ph} ms"), &|s| {
                s.phases.get(ph).map(|p| p.median_ms)
            });
        }
        // 0: the run did not measure it (the PyTorch reference)
        line("  GPU memory MiB".into(), &|s| {
            (s.peak_gpu_bytes > 0).then(|| s.peak_gpu_bytes as f64 / 1048576.0)
        });
        let fams: Vec<String> = rows
            .iter()
            .flatten()
            .flat_map(|s| s.families.iter().map(|f| f.family.clone()))
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect();
        for fam in fams {
            line(format!("  {fam} GFLOP/s"), &|s| {
                s.families
                    .iter()
                    .find(|f| f.family == fam)
                    .map(|f| f.gflops_per_s)
            });
        }
    }
    if reps.iter().any(|r| r.forward.is_some()) {
        let line = |name: &str, f: &dyn Fn(&ForwardResult) -> f64| {
            print!("{name:<26}");
            for r in &reps {
                match &r.forward {
                    Some(m) => print!(" {:>w$.1}", f(m)),
                    None => print!(" {:>w$}", "-"),
                }
            }
            println!();
        };
        println!("forward alone (no backward), per image");
        line("  one at a time ms", &|m| m.single.median_ms);
        line("  batched ms", &|m| m.masked_per_copy.median_ms);
        line("  batch", &|m| m.copies_per_submission as f64);
    }
    if reps.iter().any(|r| r.mixed.is_some()) {
        let line = |name: &str, f: &dyn Fn(&MixedResult) -> f64| {
            print!("{name:<26}");
            for r in &reps {
                match &r.mixed {
                    Some(m) => print!(" {:>w$.3}", f(m)),
                    None => print!(" {:>w$}", "-"),
                }
            }
            println!();
        };
        println!("distinct sizes (--mixed)");
        line("  per image ms", &|m| m.mixed.median_ms);
        line("  per image / one size", &|m| {
            m.mixed.median_ms / m.same.median_ms
        });
        line("  new size's plan ms", &|m| m.plan_build.median_ms);
        line("  GPU memory / one size", &|m| {
            m.mixed_gpu_bytes as f64 / m.same_gpu_bytes as f64
        });
    }
    Ok(())
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        s.chars().take(n - 1).collect::<String>() + "…"
    }
}
