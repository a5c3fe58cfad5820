//! What `gradscope bench` reports: one result per kernel and shape (or training step), the
//! machine it ran on, and the failures of the correctness check. Serialized as the `--json`
//! output; `bench::table` renders the console table from the same values.

use serde::Serialize;

use crate::gpu::AdapterSummary;
use crate::gpu::timer::GpuTiming;

/// Timings of one executor, in seconds.
#[derive(Clone, Debug, Serialize)]
pub struct SideResult {
    /// Median of the timed runs.
    pub median_s: f64,
    pub min_s: f64,
    pub max_s: f64,
    /// Timed runs (after the warm-up runs).
    pub runs: usize,
    /// Work per second in the result's unit (GFLOP/s, GB/s or samples/s) at the median.
    pub throughput: f64,
    /// How a GPU time was taken (absent on the CPU, which uses a host clock around the call).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timing: Option<GpuTiming>,
}

impl SideResult {
    /// From raw run times and the work of one run (in the unit's base: flops, bytes or
    /// samples, scaled by `unit_scale` into GFLOP/s, GB/s or samples/s).
    pub fn from_runs(times: &[f64], work: f64, unit_scale: f64, timing: Option<GpuTiming>) -> Self {
        let mut t: Vec<f64> = times.to_vec();
        t.sort_by(|a, b| a.total_cmp(b));
        let n = t.len();
        let median = if n == 0 {
            f64::NAN
        } else if n % 2 == 1 {
            t[n / 2]
        } else {
            0.5 * (t[n / 2 - 1] + t[n / 2])
        };
        SideResult {
            median_s: median,
            min_s: t.first().copied().unwrap_or(f64::NAN),
            max_s: t.last().copied().unwrap_or(f64::NAN),
            runs: n,
            // A run below the clock's resolution reads as 0 s; it is reported as the
            // throughput of one clock tick rather than as infinite.
            throughput: work / median.max(1e-9) / unit_scale,
            timing,
        }
    }
}

/// One kernel on one shape, or one training step.
#[derive(Clone, Debug, Serialize)]
pub struct KernelResult {
    /// matmul, conv2d, pool, batchnorm, layernorm, activation, loss, stats, reduce,
    /// optimizer or step.
    pub family: String,
    pub name: String,
    pub shape: String,
    /// GFLOP/s, GB/s or samples/s.
    pub unit: String,
    /// Floating-point operations of one run (compute-bound kernels).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub flops: Option<f64>,
    /// Bytes read and written by one run (memory-bound kernels).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bytes: Option<f64>,
    /// Samples of one training step.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub samples: Option<usize>,
    pub cpu: Option<SideResult>,
    pub gpu: Option<SideResult>,
    /// CPU median time / GPU median time: above 1 the GPU is faster.
    pub gpu_over_cpu: Option<f64>,
    /// The largest error of any output against the CPU twin (see `bench::compare`); absent
    /// when only one executor ran.
    pub max_rel_error: Option<f64>,
    pub tolerance: Option<f64>,
    /// Where the largest error is, when there is one.
    #[serde(skip_serializing_if = "String::is_empty")]
    pub error_at: String,
}

impl KernelResult {
    /// Whether the GPU result disagrees with the CPU twin beyond the tolerance.
    pub fn failed(&self) -> bool {
        match (self.max_rel_error, self.tolerance) {
            // A NaN error fails too.
            (Some(e), Some(t)) => e.is_nan() || e > t,
            _ => false,
        }
    }
}

/// The machine a bench ran on.
#[derive(Clone, Debug, Serialize)]
pub struct Machine {
    /// The CPU model (from /proc/cpuinfo where it exists).
    pub cpu: String,
    /// Threads the CPU executor runs on (rayon's pool).
    pub cpu_threads: usize,
    /// The instruction set of the CPU executor's direct stride-1 convolutions (`avx512`,
    /// `avx2`, `neon`), absent where every convolution goes through im2col + GEMM.
    pub cpu_conv_direct: Option<&'static str>,
    /// The GPU adapter (name, backend, driver, driver_info, …); absent with `--cpu-only`
    /// or when no adapter exists.
    pub adapter: Option<AdapterSummary>,
    /// How GPU kernel times were taken.
    pub gpu_timing: Option<GpuTiming>,
    pub gpu_timing_note: Option<String>,
    /// Nanoseconds per GPU timestamp tick, when timestamps are used.
    pub timestamp_period_ns: Option<f64>,
    /// When the bench started, UTC to the second (RFC 3339): a figure copied from the JSON
    /// keeps its date.
    pub started_utc: String,
}

/// Everything one `gradscope bench` measured.
#[derive(Clone, Debug, Serialize)]
pub struct BenchReport {
    pub gradscope_version: String,
    pub machine: Machine,
    /// The `--op` filters and `--sizes` given (empty and null: everything, the defaults).
    pub ops: Vec<String>,
    pub sizes: Option<Vec<usize>>,
    pub warmup: usize,
    pub repeats: usize,
    pub results: Vec<KernelResult>,
    /// One line per result whose GPU output disagreed with the CPU twin.
    pub failures: Vec<String>,
}
