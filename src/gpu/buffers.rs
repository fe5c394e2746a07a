//! Storage buffers holding f32 tensors, uploads and read-backs.

use super::Gpu;
use crate::error::{Error, Result};
use wgpu::util::DeviceExt;

/// A storage buffer of `len` f32 values (a clone names the same buffer).
#[derive(Clone)]
pub struct GpuBuf {
    pub buf: wgpu::Buffer,
    pub len: usize,
}

const USAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_SRC)
    .union(wgpu::BufferUsages::COPY_DST);

impl Gpu {
    fn check_size(&self, label: &str, bytes: u64) -> Result<()> {
        if bytes > self.max_binding() {
            return Err(Error::Gpu(format!(
                "{label} needs {:.1} MiB in one buffer but adapter {} binds at most {:.1} MiB; use a smaller image or another adapter",
                bytes as f64 / 1048576.0,
                self.adapter.line(),
                self.max_binding() as f64 / 1048576.0
            )));
        }
        Ok(())
    }

    /// Uninitialised-to-zero buffer of `len` floats. Like every storage buffer here, a
    /// multiple of 16 bytes long, so that kernels may read it as vec4 chunks.
    pub fn zeros(&self, label: &str, len: usize) -> Result<GpuBuf> {
        let bytes = (len.max(4) * 4).next_multiple_of(16) as u64;
        self.check_size(label, bytes)?;
        if let Some(buf) = self.pooled_buffer(label, bytes, USAGE, true) {
            return Ok(GpuBuf { buf, len });
        }
        let buf = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes,
            usage: USAGE,
            mapped_at_creation: false,
        });
        Ok(GpuBuf { buf, len })
    }

    /// Buffer holding `data`.
    pub fn upload(&self, label: &str, data: &[f32]) -> Result<GpuBuf> {
        self.upload_bytes(label, bytemuck::cast_slice(data), data.len())
    }

    pub fn upload_u32(&self, label: &str, data: &[u32]) -> Result<GpuBuf> {
        self.upload_bytes(label, bytemuck::cast_slice(data), data.len())
    }

    fn upload_bytes(&self, label: &str, bytes: &[u8], len: usize) -> Result<GpuBuf> {
        self.check_size(label, bytes.len() as u64)?;
        let mut padded;
        // zeros to a multiple of 16 bytes (`zeros`)
        let contents = if !bytes.len().is_multiple_of(16) || bytes.is_empty() {
            padded = bytes.to_vec();
            padded.resize(bytes.len().max(16).next_multiple_of(16), 0);
            &padded[..]
        } else {
            bytes
        };
        if let Some(buf) = self.pooled_buffer(label, contents.len() as u64, USAGE, false) {
            // a taken-back buffer: the contents, then zeros to its end
            self.queue.write_buffer(&buf, 0, contents);
            let tail = buf.size() - contents.len() as u64;
            if tail > 0 {
                let zeros = vec![0u8; tail as usize];
                self.queue.write_buffer(&buf, contents.len() as u64, &zeros);
            }
            return Ok(GpuBuf { buf, len });
        }
        let buf = self
            .device
            .create_buffer_init(&wgpu::util::BufferInitDescriptor {
                label: Some(label),
                contents,
                usage: USAGE,
            });
        Ok(GpuBuf { buf, len })
    }

    /// Staging buffer for read-backs.
    pub fn staging(&self, label: &str, bytes: u64) -> wgpu::Buffer {
        let usage = wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST;
        if let Some(buf) = self.pooled_buffer(label, bytes.max(16), usage, false) {
            return buf;
        }
        self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: bytes.max(16),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        })
    }

    /// Map a staging buffer (after its copy was submitted) and read `bytes` from it.
    /// The bytes come in a `Vec<u8>`, aligned for bytes only: turn them into wider values with
    /// `bytemuck::pod_collect_to_vec`, which copies, never `cast_slice`, which panics when the
    /// allocation happens not to be aligned for the wider type.
    pub fn read_staging(&self, staging: &wgpu::Buffer, bytes: u64) -> Result<Vec<u8>> {
        let slice = staging.slice(..bytes.max(4));
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait()?;
        rx.recv()
            .map_err(|_| Error::Gpu("GPU read-back was cancelled".into()))?
            .map_err(|e| Error::Gpu(format!("GPU read-back failed: {e}")))?;
        let out = slice
            .get_mapped_range()
            .map_err(|e| Error::Gpu(format!("GPU read-back failed: {e}")))?
            .to_vec();
        staging.unmap();
        Ok(out[..bytes as usize].to_vec())
    }

    /// Read a whole buffer back (tests and diagnostics; the plan uses its own staging).
    pub fn read(&self, b: &GpuBuf) -> Result<Vec<f32>> {
        self.read_range(b, 0, b.len)
    }

    /// Read `len` floats from `offset` (in floats).
    pub fn read_range(&self, b: &GpuBuf, offset: usize, len: usize) -> Result<Vec<f32>> {
        let bytes = (len * 4) as u64;
        let staging = self.staging("read", bytes);
        let mut enc = self.device.create_command_encoder(&Default::default());
        if len > 0 {
            enc.copy_buffer_to_buffer(&b.buf, (offset * 4) as u64, &staging, 0, bytes);
        }
        self.queue.submit([enc.finish()]);
        let raw = self.read_staging(&staging, bytes)?;
        self.check_errors("read-back")?;
        Ok(bytemuck::pod_collect_to_vec(&raw))
    }

    pub fn write(&self, b: &GpuBuf, data: &[f32]) {
        self.queue
            .write_buffer(&b.buf, 0, bytemuck::cast_slice(data));
    }
}
