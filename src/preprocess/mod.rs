//! Image loading and torchvision-exact preprocessing: PIL-style decode to RGB, Pillow's bilinear `Resize(short_side)`, `ToTensor`, `Normalize`.

mod decode;
mod resize;

pub use decode::{load_image, load_image_bytes, load_image_bytes_with};
pub use resize::{Resample, resize_pil, resize_pil_bilinear, resized_size};

use crate::error::{Error, Result};
use image::RgbImage;

/// ImageNet mean used by `Normalize` (RGB order).
pub const MEAN: [f32; 3] = [0.485, 0.456, 0.406];
/// ImageNet standard deviation used by `Normalize` (RGB order).
pub const STD: [f32; 3] = [0.229, 0.224, 0.225];

/// Most pixels of a model input (H·W): 2^22, a 48 MiB tensor, e.g. 224×18,724 (aspect 83:1
/// at Lite0's short side) or 380×11,037 (29:1 at B4's); panoramas are 6:1 to 20:1. Photos are
/// resized to a fixed short side, so only the aspect ratio reaches it. Beyond it, the resize
/// alone would spend seconds and hundreds of MiB on an input that only the largest adapters
/// bind (B4's first block at 380×11,037 holds 192 MiB in one buffer; most adapters bind 128).
pub const MAX_INPUT_PIXELS: u64 = 1 << 22;

/// A normalised model input.
#[derive(Debug, Clone)]
pub struct Preprocessed {
    /// (3, H, W) CHW, normalised.
    pub tensor: Vec<f32>,
    pub height: usize,
    pub width: usize,
}

/// What a model's reference code does to a photo: torchvision `Resize(short_side, filter)`,
/// `ToTensor`, `Normalize(mean, std)`.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize)]
pub struct Preprocessing {
    pub short_side: u32,
    pub resample: Resample,
    pub mean: [f32; 3],
    pub std: [f32; 3],
}

impl Preprocessing {
    /// visloc (README, Numerics): short side 300, bilinear, ImageNet mean/std.
    pub const VISLOC: Preprocessing = Preprocessing {
        short_side: 300,
        resample: Resample::Bilinear,
        mean: MEAN,
        std: STD,
    };
    /// EfficientNet-Lite (timm's `tf_efficientnet_lite0` config): short side 224, bicubic,
    /// mean = std = 0.5.
    pub const LITE: Preprocessing = Preprocessing {
        short_side: 224,
        resample: Resample::Bicubic,
        mean: [0.5; 3],
        std: [0.5; 3],
    };

    /// One line for messages and reports.
    pub fn describe(&self) -> String {
        format!(
            "short side {}, {:?}, mean {:?}, std {:?}",
            self.short_side, self.resample, self.mean, self.std
        )
    }
}

/// torchvision Resize(short_side) (no resampling when the short side already equals it) +
/// ToTensor + Normalize with ImageNet's mean and std, bilinear: visloc's preprocessing.
///
/// Per element, in f32 as torch does: `(v / 255 - mean) / std`.
pub fn preprocess(img: &RgbImage, short_side: u32) -> Result<Preprocessed> {
    preprocess_with(
        img,
        &Preprocessing {
            short_side,
            ..Preprocessing::VISLOC
        },
    )
}

/// [`preprocess`] with any resize filter, size, mean and std.
pub fn preprocess_with(img: &RgbImage, p: &Preprocessing) -> Result<Preprocessed> {
    let short_side = p.short_side;
    let (w, h) = img.dimensions();
    if w == 0 || h == 0 {
        return Err(Error::Input(format!(
            "cannot preprocess an empty image ({w}x{h}); use a picture with at least one pixel"
        )));
    }
    if short_side == 0 {
        return Err(Error::Input(
            "the resize target (short side) is 0; pass a positive size such as 300".into(),
        ));
    }
    let (nw, nh) = resized_size(w, h, short_side);
    if nw == 0 || nh == 0 || nw as u64 * nh as u64 > MAX_INPUT_PIXELS {
        let aspect = w.max(h) as f64 / w.min(h) as f64;
        let most = MAX_INPUT_PIXELS as f64 / (short_side as f64 * short_side as f64);
        return Err(Error::Input(format!(
            "a {w}x{h} photo (aspect {aspect:.1}:1) resized to short side {short_side} gives a \
             {nw}x{nh} model input, over the {MAX_INPUT_PIXELS} pixels the engine takes: crop \
             the photo to an aspect ratio of at most about {most:.0}:1"
        )));
    }
    let resized;
    let src = if (nw, nh) == (w, h) {
        img
    } else {
        resized = resize_pil(img, nw, nh, p.resample);
        &resized
    };
    let (width, height) = (nw as usize, nh as usize);
    let plane = width * height;
    let mut tensor = vec![0f32; 3 * plane];
    for (i, px) in src.as_raw().chunks_exact(3).enumerate() {
        for c in 0..3 {
            tensor[c * plane + i] = (px[c] as f32 / 255.0 - p.mean[c]) / p.std[c];
        }
    }
    Ok(Preprocessed {
        tensor,
        height,
        width,
    })
}
