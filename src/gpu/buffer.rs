//! Buffer creation, upload and blocking readback. Storage buffers are created at plan time;
//! the blocking readback is for tests, checkpoints and the end of a run, never the step loop
//! (statistics use the asynchronous ring in `gpu::readback`).

use super::context::GpuContext;
use crate::error::{Error, Result};

/// Usage of every tensor buffer: bound as storage, written from the host, copied out.
pub const STORAGE: wgpu::BufferUsages = wgpu::BufferUsages::STORAGE
    .union(wgpu::BufferUsages::COPY_DST)
    .union(wgpu::BufferUsages::COPY_SRC);

/// Rounds a size up to wgpu's copy alignment (4 bytes); zero-sized buffers are not allowed.
fn padded(bytes: u64) -> u64 {
    bytes.max(4).div_ceil(4) * 4
}

impl GpuContext {
    /// A zeroed storage buffer of `bytes` bytes, refused before any wgpu call when it
    /// exceeds the device's limits.
    pub fn storage_buffer(&self, label: &str, bytes: u64) -> Result<wgpu::Buffer> {
        self.check_size(label, bytes)?;
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: padded(bytes),
            usage: STORAGE,
            mapped_at_creation: false,
        });
        self.check(&format!("allocating {label}"))?;
        Ok(buffer)
    }

    /// A storage buffer holding `data`.
    pub fn upload<T: bytemuck::Pod>(&self, label: &str, data: &[T]) -> Result<wgpu::Buffer> {
        let bytes: &[u8] = bytemuck::cast_slice(data);
        let buffer = self.storage_buffer(label, bytes.len() as u64)?;
        self.write(&buffer, bytes);
        Ok(buffer)
    }

    /// A uniform buffer holding `value` (op parameters: shapes, constants).
    pub fn uniform<T: bytemuck::Pod>(&self, label: &str, value: &T) -> Result<wgpu::Buffer> {
        let bytes: &[u8] = bytemuck::bytes_of(value);
        let buffer = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some(label),
            size: padded(bytes.len() as u64).div_ceil(16) * 16,
            usage: wgpu::BufferUsages::UNIFORM | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        self.queue.write_buffer(&buffer, 0, bytes);
        self.check(&format!("allocating uniform {label}"))?;
        Ok(buffer)
    }

    /// Queues a write of `bytes` at the start of `buffer` (lengths padded to 4 bytes).
    pub fn write(&self, buffer: &wgpu::Buffer, bytes: &[u8]) {
        if bytes.len().is_multiple_of(4) {
            self.queue.write_buffer(buffer, 0, bytes);
        } else {
            let mut v = bytes.to_vec();
            v.resize(bytes.len().div_ceil(4) * 4, 0);
            self.queue.write_buffer(buffer, 0, &v);
        }
    }

    /// Copies `len` elements of `buffer` back to the host, waiting for the queue.
    pub fn read<T: bytemuck::Pod>(&self, buffer: &wgpu::Buffer, len: usize) -> Result<Vec<T>> {
        let bytes = (len * std::mem::size_of::<T>()) as u64;
        if bytes == 0 {
            return Ok(Vec::new());
        }
        let staging = self.device.create_buffer(&wgpu::BufferDescriptor {
            label: Some("readback"),
            size: padded(bytes),
            usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
            mapped_at_creation: false,
        });
        let mut encoder = self.device.create_command_encoder(&Default::default());
        encoder.copy_buffer_to_buffer(buffer, 0, &staging, 0, padded(bytes));
        self.queue.submit([encoder.finish()]);
        let slice = staging.slice(..);
        let (tx, rx) = std::sync::mpsc::channel();
        slice.map_async(wgpu::MapMode::Read, move |r| {
            let _ = tx.send(r);
        });
        self.wait_idle("readback")?;
        let mapped = rx.recv().map_err(|e| Error::Gpu {
            during: "readback".into(),
            message: e.to_string(),
        })?;
        mapped.map_err(|e| Error::Gpu {
            during: "readback".into(),
            message: e.to_string(),
        })?;
        let view = slice.get_mapped_range().map_err(|e| Error::Gpu {
            during: "readback".into(),
            message: e.to_string(),
        })?;
        let out = bytemuck::cast_slice::<u8, T>(&view[..bytes as usize]).to_vec();
        drop(view);
        staging.unmap();
        Ok(out)
    }
}
