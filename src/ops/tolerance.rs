//! One tolerance type, and comparisons that say where and by how much two tensors differ.

/// |a − b| ≤ absolute + relative·|b| must hold elementwise.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    pub relative: f32,
    pub absolute: f32,
}

impl Tolerance {
    /// Same op, same order of sums: float32 rounding only. The absolute part is scaled to the
    /// tensor's peak (`scaled`). measured on lavapipe, 2026-12-02, every kernel test (tests/ops.rs, batch.rs, cam.rs):
    /// the worst element used 2.2% of the former 1e-4/1e-5 (a batched softmax, 1.8e-7 off),
    /// so ≈ 11% of this one. H200: not measured since; its first run fills this in.
    pub const KERNEL: Tolerance = Tolerance {
        relative: 2e-5,
        absolute: 2e-6,
    };
    /// A whole network against our CPU model, block by block (tests/model.rs). measured on lavapipe, 2026-12-02: the worst
    /// element used 1.3% of the former 2e-3/2e-4 (B4's last block gradient, 1.1e-9 off), so
    /// ≈ 13% of this one. H200: not measured since.
    pub const MODEL: Tolerance = Tolerance {
        relative: 2e-4,
        absolute: 2e-5,
    };

    pub fn new(relative: f32, absolute: f32) -> Self {
        Tolerance { relative, absolute }
    }

    /// Scale the absolute part to the tensor's magnitude: absolute·max|expected|.
    pub fn scaled(self, expected: &[f32]) -> Tolerance {
        let m = peak(expected).max(1e-30);
        Tolerance {
            relative: self.relative,
            absolute: self.absolute * m,
        }
    }
}

/// A CAM map: 1e-4 of the map's own peak, or of 1e-2 of the largest map's peak when the map
/// is nearly zero (ReLU of a nearly cancelling sum, whose float32 error is relatively large).
/// Measured on B0, B4, Lite0 and TF B0: every map of every method within 4e-5 of its peak,
/// but XGrad-CAM's (see [`xgradcam_tolerance`]); measured on lavapipe, 2026-12-02: the worst map used 7% of this
/// (tests/model.rs, B4's gradcam.22).
pub fn map_tolerance(want: &[f32], largest: f32) -> Tolerance {
    Tolerance::new(0.0, 1e-4 * peak(want).max(1e-2 * largest))
}

/// XGrad-CAM divides each channel's Σ g·A by its Σ A, which nearly cancels for some channels
/// of signed block outputs: its maps amplify float32 rounding up to κ ≈ 6e3 on B0 (PyTorch's
/// own float32 map is 1e-3 from float64 there). 1e-2 of the peak (or of 1e-2 of the largest).
pub fn xgradcam_tolerance(want: &[f32], largest: f32) -> Tolerance {
    Tolerance::new(0.0, 1e-2 * peak(want).max(1e-2 * largest))
}

/// max |v|
pub fn peak(v: &[f32]) -> f32 {
    v.iter().fold(0f32, |a, x| a.max(x.abs()))
}

/// Outcome of comparing `got` with `want`.
#[derive(Debug, Clone)]
pub struct Comparison {
    pub name: String,
    pub max_abs: f32,
    /// max |got − want| / max |want|
    pub max_rel_to_peak: f32,
    pub mismatches: usize,
    /// the largest |got − want| / (absolute + relative·|want|): how much of the tolerance the
    /// worst element used (1 = at the limit)
    pub used: f32,
    pub report: String,
}

impl Comparison {
    pub fn ok(&self) -> bool {
        self.mismatches == 0
    }
}

/// Compare two tensors of `shape` (row-major). Lists the first few mismatches with their
/// position, both values, the difference and the tolerance.
pub fn compare(
    name: &str,
    got: &[f32],
    want: &[f32],
    shape: &[usize],
    tol: Tolerance,
) -> Comparison {
    let mut report = String::new();
    if got.len() != want.len() {
        return Comparison {
            name: name.into(),
            max_abs: f32::INFINITY,
            max_rel_to_peak: f32::INFINITY,
            mismatches: want.len().max(1),
            used: f32::INFINITY,
            report: format!(
                "{name}: length {} but expected {} (shape {shape:?})",
                got.len(),
                want.len()
            ),
        };
    }
    let peak = peak(want);
    let mut max_abs = 0f32;
    let mut used = 0f32;
    let mut mismatches = 0;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = (g - w).abs();
        let limit = tol.absolute + tol.relative * w.abs();
        #[expect(
            clippy::neg_cmp_op_on_partial_ord,
            reason = "a NaN difference is bad too"
        )]
        let bad = !(d <= limit) || g.is_nan() != w.is_nan();
        if d > 0.0 || d.is_nan() {
            let u = if limit > 0.0 {
                d / limit
            } else {
                f32::INFINITY
            };
            used = if u.is_nan() {
                f32::INFINITY
            } else {
                used.max(u)
            };
        }
        if d > max_abs || d.is_nan() {
            max_abs = if d.is_nan() { f32::INFINITY } else { d };
        }
        if bad {
            if mismatches < 5 {
                report.push_str(&format!(
                    "\n  {name}{:?}: got {g:e}, want {w:e}, |diff| {d:e} > {:e} (abs {:e} + rel {:e})",
                    position(i, shape),
                    tol.absolute + tol.relative * w.abs(),
                    tol.absolute,
                    tol.relative
                ));
            }
            mismatches += 1;
        }
    }
    if mismatches > 5 {
        report.push_str(&format!("\n  … and {} more mismatches", mismatches - 5));
    }
    let rel = if peak > 0.0 { max_abs / peak } else { max_abs };
    let head = if mismatches == 0 {
        format!(
            "{name:<14} OK   max|diff| {max_abs:.3e}  (/peak {rel:.2e}, {:.1}% of the tolerance, shape {shape:?})",
            100.0 * used
        )
    } else {
        format!(
            "{name:<14} FAIL {mismatches} of {} outside tolerance, max|diff| {max_abs:.3e} (/peak {rel:.2e}, shape {shape:?})",
            want.len()
        )
    };
    Comparison {
        name: name.into(),
        max_abs,
        max_rel_to_peak: rel,
        mismatches,
        used,
        report: head + &report,
    }
}

/// Flat index → multi-index, e.g. (c, y, x).
pub fn position(mut i: usize, shape: &[usize]) -> Vec<usize> {
    let mut pos = vec![0; shape.len()];
    for d in (0..shape.len()).rev() {
        let n = shape[d].max(1);
        pos[d] = i % n;
        i /= n;
    }
    pos
}
