//! The statistics kernel: one tensor's record (counts, moments, extrema, norm, log2|x|
//! histogram, saturation), as every step takes it for every layer: `stats_partial` over
//! 8192-element chunks then `stats_finalize` on the device, `cpu::stats::stats_reduce` on
//! the host. Memory-bound: GB/s over the tensor read once.

use super::case::{Case, Check, Data, Pending, Tensor, Work};
use super::options::Family;
use crate::gpu::kernels::stats::{self as gpu, RECORD_BYTES, StatsJob, partial_count};
use crate::stats::RECORD_WORDS;

/// The moments are f32 sums merged in different trees (Welford and Chan on the device,
/// shifted f64 sums on the CPU); the kernel tests bound their difference by 1e-5.
const TOL: f64 = 1e-5;
/// Counted as a tanh output's saturation would be.
const SATURATION: (f32, f32) = (-0.95, 0.95);

pub fn cases(len: usize) -> Vec<Pending> {
    vec![
        record_case(len, Values::Uniform),
        record_case(len, Values::ReluOutputs),
    ]
}

/// What the tensor holds: how many histogram bins its values span decides much of the
/// record's cost on the CPU.
#[derive(Clone, Copy)]
enum Values {
    /// Uniform in [−1, 1]: a dense weight or gradient, a few neighbouring bins.
    Uniform,
    /// The same with the negatives set to 0, as a ReLU layer's outputs (and their
    /// gradients) are: half zeros, far below the other values' bins.
    ReluOutputs,
}

fn record_case(len: usize, values: Values) -> Pending {
    let f = Family::Stats;
    let shape = match values {
        Values::Uniform => format!("{len} elements"),
        Values::ReluOutputs => format!("{len} elements, ReLU (half 0)"),
    };
    Pending::new(f, "stats_record", move || {
        let mut x = Tensor::random("x", len, 81, -1.0, 1.0);
        if let (Values::ReluOutputs, Data::F32(v)) = (values, &mut x.data) {
            v.iter_mut().for_each(|e| *e = e.max(0.0));
        }
        Case {
            family: f,
            name: "stats_record".into(),
            shape,
            work: Work::Bytes(len as f64 * 4.0 + RECORD_BYTES as f64),
            tensors: vec![
                x,
                Tensor {
                    name: "record",
                    data: Data::U32(vec![0; RECORD_WORDS]),
                    check: Check::Stats(TOL),
                },
            ],
            cpu: Box::new(move |t| {
                let r = crate::cpu::stats::stats_reduce(t.f(0), Some(SATURATION));
                t.put_u(1, bytemuck::cast_slice(&[r]).to_vec());
                Ok(())
            }),
            gpu: Box::new(move |ctx, b| {
                let count = partial_count(len);
                let partials =
                    ctx.storage_buffer("bench.partials", count.max(1) as u64 * RECORD_BYTES)?;
                let jobs = ctx.upload(
                    "bench.jobs",
                    &[StatsJob {
                        partial_base: 0,
                        partial_count: count as u32,
                        record: 0,
                        _pad: 0,
                    }],
                )?;
                Ok(vec![
                    gpu::stats_partial(ctx, &b[0], len, Some(SATURATION), &partials, 0)?,
                    gpu::stats_finalize(ctx, &partials, &jobs, &b[1], 1)?,
                ])
            }),
        }
    })
}
