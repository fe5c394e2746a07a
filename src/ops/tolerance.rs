//! One tolerance type, and comparisons that say where and by how much two tensors differ.

/// |a − b| ≤ absolute + relative·|b| must hold elementwise.
#[derive(Clone, Copy, Debug)]
pub struct Tolerance {
    pub relative: f32,
    pub absolute: f32,
}

impl Tolerance {
    /// Same op, same order of sums: float32 rounding only.
    pub const KERNEL: Tolerance = Tolerance {
        relative: 1e-4,
        absolute: 1e-5,
    };
    /// A whole network against another implementation (PyTorch, or our CPU model).
    pub const MODEL: Tolerance = Tolerance {
        relative: 2e-3,
        absolute: 2e-4,
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
/// but XGrad-CAM's (see [`xgradcam_tolerance`]).
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
            report: format!(
                "{name}: length {} but expected {} (shape {shape:?})",
                got.len(),
                want.len()
            ),
        };
    }
    let peak = peak(want);
    let mut max_abs = 0f32;
    let mut mismatches = 0;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let d = (g - w).abs();
        let bad = !(d <= tol.absolute + tol.relative * w.abs()) || g.is_nan() != w.is_nan();
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
        format!("{name:<14} OK   max|diff| {max_abs:.3e}  (/peak {rel:.2e}, shape {shape:?})")
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
