//! The ring of staging buffers through which each step's loss and statistics come back.
//!
//! A step copies its results into the next free slot and maps it asynchronously; the host
//! collects slots as they complete. Only when every slot is still in flight does the next
//! step wait, for the oldest one: the device runs ahead of the host by up to `SLOTS` steps
//! and statistics never stall the queue.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};

use super::context::GpuContext;
use crate::error::{Error, Result};

/// Slots in the ring: enough for the host to read one while the device fills the next.
pub const SLOTS: usize = 3;

const IDLE: u8 = 0;
const PENDING: u8 = 1;
const MAPPED: u8 = 2;
const FAILED: u8 = 3;

struct Slot {
    buffer: wgpu::Buffer,
    state: Arc<AtomicU8>,
    /// Caller's tag (the step number and whatever it needs to interpret the bytes).
    tag: u64,
    submission: Option<wgpu::SubmissionIndex>,
}

pub struct ReadbackRing {
    slots: Vec<Slot>,
    /// Slots in flight, oldest first.
    in_flight: VecDeque<usize>,
    bytes: u64,
}

impl ReadbackRing {
    pub fn new(ctx: &GpuContext, bytes: u64) -> Result<Self> {
        let bytes = bytes.max(4).div_ceil(4) * 4;
        let slots = (0..SLOTS)
            .map(|i| Slot {
                buffer: ctx.device.create_buffer(&wgpu::BufferDescriptor {
                    label: Some(&format!("readback.{i}")),
                    size: bytes,
                    usage: wgpu::BufferUsages::MAP_READ | wgpu::BufferUsages::COPY_DST,
                    mapped_at_creation: false,
                }),
                state: Arc::new(AtomicU8::new(IDLE)),
                tag: 0,
                submission: None,
            })
            .collect();
        ctx.check("allocating the readback ring")?;
        Ok(ReadbackRing {
            slots,
            in_flight: VecDeque::new(),
            bytes,
        })
    }

    /// The slot the next step copies into. When all are in flight, waits for the oldest
    /// and hands its bytes to `collect` first.
    pub fn next_slot(
        &mut self,
        ctx: &GpuContext,
        collect: &mut impl FnMut(u64, &[u8]),
    ) -> Result<usize> {
        if self.in_flight.len() == SLOTS {
            self.collect(ctx, true, 1, collect)?;
        }
        let busy: Vec<usize> = self.in_flight.iter().copied().collect();
        (0..SLOTS)
            .find(|i| !busy.contains(i))
            .ok_or_else(|| Error::Gpu {
                during: "readback".into(),
                message: "no free staging slot".into(),
            })
    }

    pub fn buffer(&self, slot: usize) -> &wgpu::Buffer {
        &self.slots[slot].buffer
    }

    /// Marks `slot` as submitted and starts mapping it.
    pub fn submitted(&mut self, slot: usize, tag: u64, submission: wgpu::SubmissionIndex) {
        let s = &mut self.slots[slot];
        s.tag = tag;
        s.submission = Some(submission);
        s.state.store(PENDING, Ordering::SeqCst);
        let state = s.state.clone();
        s.buffer.slice(..).map_async(wgpu::MapMode::Read, move |r| {
            state.store(if r.is_ok() { MAPPED } else { FAILED }, Ordering::SeqCst);
        });
        self.in_flight.push_back(slot);
    }

    /// Hands finished slots to `collect(tag, bytes)` in submission order. With `wait`,
    /// blocks until at least `min` slots (or all in flight, if fewer) are collected.
    pub fn collect(
        &mut self,
        ctx: &GpuContext,
        wait: bool,
        min: usize,
        collect: &mut impl FnMut(u64, &[u8]),
    ) -> Result<usize> {
        let err = |m: String| Error::Gpu {
            during: "statistics readback".into(),
            message: m,
        };
        ctx.device
            .poll(wgpu::PollType::Poll)
            .map_err(|e| err(e.to_string()))?;
        let mut done = 0;
        while let Some(&slot) = self.in_flight.front() {
            let s = &self.slots[slot];
            let mut state = s.state.load(Ordering::SeqCst);
            // The map callback runs inside whichever thread's poll handles the finished
            // submission, possibly another thread sharing the device: wait until it has
            // run, not only until the submission is done.
            while state == PENDING && wait && done < min {
                let submission_index = s.submission.clone();
                ctx.device
                    .poll(wgpu::PollType::Wait {
                        submission_index,
                        timeout: None,
                    })
                    .map_err(|e| err(e.to_string()))?;
                state = s.state.load(Ordering::SeqCst);
                if state == PENDING {
                    std::thread::yield_now();
                }
            }
            match state {
                MAPPED => {
                    {
                        let view = s
                            .buffer
                            .slice(..)
                            .get_mapped_range()
                            .map_err(|e| err(e.to_string()))?;
                        collect(s.tag, &view[..self.bytes as usize]);
                    }
                    s.buffer.unmap();
                    s.state.store(IDLE, Ordering::SeqCst);
                    self.in_flight.pop_front();
                    done += 1;
                }
                FAILED => {
                    ctx.check("statistics readback")?;
                    return Err(err("mapping a staging buffer failed".into()));
                }
                _ => break,
            }
        }
        ctx.check("statistics readback")?;
        Ok(done)
    }

    /// Collects every slot in flight.
    pub fn drain(&mut self, ctx: &GpuContext, collect: &mut impl FnMut(u64, &[u8])) -> Result<()> {
        let n = self.in_flight.len();
        self.collect(ctx, true, n, collect)?;
        Ok(())
    }

    /// Bytes of all staging buffers.
    pub fn total_bytes(&self) -> u64 {
        self.bytes * SLOTS as u64
    }

    pub fn in_flight(&self) -> usize {
        self.in_flight.len()
    }
}
