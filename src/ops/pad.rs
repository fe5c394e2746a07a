//! How a convolution pads its input: the rules of the families (symmetric, TF "SAME" at the
//! actual size) and the output sizes they give. Plain arithmetic, shared by the conv and
//! depthwise launchers and the model's configuration.

/// How a conv pads its input (per axis).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PadRule {
    /// (k−1)/2 on both sides (efficientnet_pytorch as visloc uses it, timm `efficientnet_*`)
    Symmetric,
    /// TF "SAME" at the actual input size (timm `tf_efficientnet_*`, every EfficientNet-Lite):
    /// in all max((⌈n/s⌉−1)·s + k − n, 0), ⌊·/2⌋ before
    TfSame,
}

/// TF "SAME" along one axis of `n` inputs: (padding before, padding in all).
pub fn tf_same(n: usize, k: usize, s: usize) -> (usize, usize) {
    let total = ((n.max(1).div_ceil(s) - 1) * s + k).saturating_sub(n);
    (total / 2, total)
}

/// (pad top, pad left, out h, out w) of a k×k conv with stride `s` on an h×w input.
pub fn pads_2d(
    h: usize,
    w: usize,
    k: usize,
    s: usize,
    rule: PadRule,
) -> (usize, usize, usize, usize) {
    let (pt, oh) = pad_out(h, k, s, rule);
    let (pl, ow) = pad_out(w, k, s, rule);
    (pt, pl, oh, ow)
}

/// Padding before the first row (or column) and the output size of a conv along one axis
/// of `n` inputs (0 when the input is smaller than the kernel can use).
pub fn pad_out(n: usize, k: usize, s: usize, rule: PadRule) -> (usize, usize) {
    let (before, total) = match rule {
        PadRule::Symmetric => ((k - 1) / 2, 2 * ((k - 1) / 2)),
        PadRule::TfSame => tf_same(n, k, s),
    };
    if n == 0 || n + total < k {
        return (before, 0);
    }
    (before, (n + total - k) / s + 1)
}
