//! Plans that do not multiply. A plan for a new input size is recorded again (a few
//! milliseconds: the pipelines are shared), but it takes back what the previous plan of the
//! same options made, in the order that plan made it:
//! - buffers, when large enough; a buffer that must grow gets 25% headroom, so a folder of
//!   ever wider photos grows it a few times, not once per photo;
//! - the GEMM scratch texture and the read-back buffer, likewise;
//! - each dispatch's uniform buffer and bind group, when its pipeline and buffers are the same
//!   (the new sizes and strides are written into the uniform buffer).
//!
//! The memory held is then that of the largest input seen (plus headroom), whatever the number
//! of distinct sizes. A taken-back buffer is cleared on the GPU before the new plan's first run,
//! so the plan sees zeros exactly as in a fresh buffer.

use super::Gpu;
use std::sync::Arc;

/// Headroom given to a buffer or texture that must grow.
const GROWTH: f64 = 1.25;

/// A dispatch's uniform buffer and bind group, with what the bind group binds.
struct Kept {
    pipeline: Arc<wgpu::ComputePipeline>,
    buffers: Vec<(u32, wgpu::Buffer)>,
    views: Vec<(u32, wgpu::TextureView)>,
    words: usize,
    ubuf: wgpu::Buffer,
    bind_group: wgpu::BindGroup,
}

/// What a plan made, in order, for the next plan of the same options to take back.
#[derive(Default)]
pub struct Recycler {
    bufs: Vec<Option<wgpu::Buffer>>,
    stagings: Vec<Option<wgpu::Buffer>>,
    textures: Vec<Option<(wgpu::Texture, wgpu::TextureView)>>,
    kept: Vec<Option<Kept>>,
}

/// What the plan being recorded has taken back and made so far.
#[derive(Default)]
pub(crate) struct Recording {
    old: Recycler,
    new: Recycler,
    clear: Vec<wgpu::Buffer>,
    pub(crate) stats: RecycleStats,
}

/// How much of a plan was taken back.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct RecycleStats {
    pub buffers_kept: usize,
    pub buffers_made: usize,
    pub bind_groups_kept: usize,
    pub bind_groups_made: usize,
}

impl Recycler {
    /// Bytes held: buffers, read-back buffers and textures.
    pub fn bytes(&self) -> u64 {
        let b: u64 = self
            .bufs
            .iter()
            .chain(&self.stagings)
            .flatten()
            .map(|b| b.size())
            .sum();
        let t: u64 = self
            .textures
            .iter()
            .flatten()
            .map(|(t, _)| {
                let s = t.size();
                s.width as u64 * s.height as u64 * 16
            })
            .sum();
        b + t
    }
}

/// Take the `k`-th item of `old` if `fits` accepts it.
fn take<T>(old: &mut [Option<T>], k: usize, fits: impl Fn(&T) -> bool) -> Option<T> {
    match old.get_mut(k) {
        Some(slot) if slot.as_ref().is_some_and(&fits) => slot.take(),
        _ => None,
    }
}

/// Capacity for `need`, given what the previous plan had at this place: exact the first time,
/// with headroom when it grows, never over `max`.
pub fn capacity(need: u64, had: Option<u64>, max: u64) -> u64 {
    match had {
        None => need,
        Some(h) => need.max((h as f64 * GROWTH) as u64).min(max.max(need)),
    }
}

/// Recordings are per thread: plans may be recorded on several threads at once.
fn me() -> std::thread::ThreadId {
    std::thread::current().id()
}

/// While it lives, plans made on this `Gpu` take back from and add to its recording.
pub struct RecordGuard<'g> {
    gpu: &'g Gpu,
}

impl RecordGuard<'_> {
    /// End the recording: schedule the clears and hand back what the new plan holds.
    pub fn finish(self) -> (Recycler, RecycleStats) {
        let rec = self
            .gpu
            .recording
            .lock()
            .unwrap()
            .remove(&me())
            .unwrap_or_default();
        if !rec.clear.is_empty() {
            let mut enc = self.gpu.device.create_command_encoder(&Default::default());
            for b in &rec.clear {
                enc.clear_buffer(b, 0, None);
            }
            self.gpu.queue.submit([enc.finish()]);
        }
        (rec.new, rec.stats)
    }
}

impl Drop for RecordGuard<'_> {
    fn drop(&mut self) {
        // an error path: the half-made plan and what it took back are dropped
        if let Ok(mut r) = self.gpu.recording.lock() {
            r.remove(&me());
        }
    }
}

impl Gpu {
    /// Start recording a plan that takes back from `old`.
    pub fn record_with(&self, old: Recycler) -> RecordGuard<'_> {
        let mut r = self.recording.lock().unwrap();
        let before = r.insert(
            me(),
            Recording {
                old,
                ..Default::default()
            },
        );
        assert!(before.is_none(), "a thread records one plan at a time");
        RecordGuard { gpu: self }
    }

    /// Whether this thread is recording a plan.
    pub(crate) fn is_recording(&self) -> bool {
        self.recording.lock().unwrap().contains_key(&me())
    }

    /// While recording: the plan's next storage buffer of at least `bytes`, taken back or
    /// made. `zero`: cleared before the plan's first run (else the caller fills it).
    pub(crate) fn pooled_buffer(
        &self,
        label: &str,
        bytes: u64,
        usage: wgpu::BufferUsages,
        zero: bool,
    ) -> Option<wgpu::Buffer> {
        let mut guard = self.recording.lock().unwrap();
        let rec = guard.get_mut(&me())?;
        let staging = usage.contains(wgpu::BufferUsages::MAP_READ);
        let (old, new) = if staging {
            (&mut rec.old.stagings, &mut rec.new.stagings)
        } else {
            (&mut rec.old.bufs, &mut rec.new.bufs)
        };
        let k = new.len();
        let had = old.get(k).and_then(|b| b.as_ref()).map(|b| b.size());
        let buf = match take(old, k, |b| b.size() >= bytes) {
            Some(b) => {
                rec.stats.buffers_kept += 1;
                if zero {
                    rec.clear.push(b.clone());
                }
                b
            }
            None => {
                rec.stats.buffers_made += 1;
                // a buffer that grows is dropped now, before its successor is made
                if let Some(slot) = old.get_mut(k) {
                    slot.take();
                }
                let max = if staging {
                    self.limits.max_buffer_size
                } else {
                    self.max_binding()
                };
                self.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(label),
                    size: capacity(bytes, had, max).div_ceil(16) * 16,
                    usage,
                    mapped_at_creation: false,
                })
            }
        };
        new.push(Some(buf.clone()));
        Some(buf)
    }

    /// While recording: the plan's next scratch texture of at least `rows` rows, taken back
    /// or made by `make` (given the rows to make).
    pub(crate) fn pooled_texture(
        &self,
        rows: u32,
        make: &dyn Fn(u32) -> (wgpu::Texture, wgpu::TextureView),
    ) -> Option<(wgpu::Texture, wgpu::TextureView)> {
        let mut guard = self.recording.lock().unwrap();
        let rec = guard.get_mut(&me())?;
        let k = rec.new.textures.len();
        let had = rec.old.textures.get(k).and_then(|t| t.as_ref());
        let had = had.map(|t| t.0.size().height as u64);
        let t = match take(&mut rec.old.textures, k, |t| t.0.size().height >= rows) {
            Some(t) => t,
            None => {
                if let Some(slot) = rec.old.textures.get_mut(k) {
                    slot.take();
                }
                let max = self.limits.max_texture_dimension_2d as u64;
                make(capacity(rows as u64, had, max) as u32)
            }
        };
        rec.new.textures.push(Some(t.clone()));
        Some(t)
    }

    /// While recording: the plan's next bind group, taken back when it binds the same
    /// pipeline, buffers and views (its uniform buffer then gets `words`), or made by `make`.
    pub(crate) fn pooled_bind_group(
        &self,
        pipeline: &Arc<wgpu::ComputePipeline>,
        buffers: &[(u32, &wgpu::Buffer)],
        views: &[(u32, &wgpu::TextureView)],
        words: &[u32],
        make: &dyn Fn() -> (wgpu::Buffer, wgpu::BindGroup),
    ) -> Option<wgpu::BindGroup> {
        let mut guard = self.recording.lock().unwrap();
        let rec = guard.get_mut(&me())?;
        let k = rec.new.kept.len();
        let same = |kp: &Kept| {
            Arc::ptr_eq(&kp.pipeline, pipeline)
                && kp.words == words.len()
                && kp.buffers.len() == buffers.len()
                && kp.views.len() == views.len()
                && kp
                    .buffers
                    .iter()
                    .zip(buffers)
                    .all(|(a, b)| a.0 == b.0 && a.1 == *b.1)
                && kp
                    .views
                    .iter()
                    .zip(views)
                    .all(|(a, b)| a.0 == b.0 && a.1 == *b.1)
        };
        let kept = match take(&mut rec.old.kept, k, same) {
            Some(kp) => {
                rec.stats.bind_groups_kept += 1;
                self.queue
                    .write_buffer(&kp.ubuf, 0, bytemuck::cast_slice(words));
                kp
            }
            None => {
                rec.stats.bind_groups_made += 1;
                let (ubuf, bind_group) = make();
                Kept {
                    pipeline: pipeline.clone(),
                    buffers: buffers.iter().map(|(i, b)| (*i, (*b).clone())).collect(),
                    views: views.iter().map(|(i, v)| (*i, (*v).clone())).collect(),
                    words: words.len(),
                    ubuf,
                    bind_group,
                }
            }
        };
        let bg = kept.bind_group.clone();
        rec.new.kept.push(Some(kept));
        Some(bg)
    }
}
