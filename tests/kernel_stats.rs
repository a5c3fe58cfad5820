//! Statistics kernels: GPU against the CPU twin, the CPU twin against a direct f64
//! computation, run-to-run bit reproducibility, multi-job finalize and dead units.
//!
//! Tolerances. Counts, histograms, min, max and max_abs select or count elements, so they
//! must agree exactly. mean, m2_scaled and norm_ssq are sums taken in different orders: the
//! device sums shifted values scaled by a power of two in f32 (32 per invocation) and merges
//! records in a fixed tree (Chan's formula); the CPU twin sums shifted values in f64 per
//! 4096-element chunk. The CPU side is thus accurate to f32 rounding, and the device's f32
//! sums (32 terms, then ~2·8 tree levels) err by a few ULP each, relative ~1e-6 typically:
//! 1e-5 relative is a safe bound that still fails on any real error (a wrong scale, a lost
//! element). The mean can cancel to near zero, so its error is measured against max|x|, the
//! scale of the values that were summed. Both sides are also checked against direct f64
//! computations below.

mod common;

use gradscope::cpu::stats as cpu;
use gradscope::gpu::GpuContext;
use gradscope::gpu::kernels::stats::{self as gpu, RECORD_BYTES, StatsJob, partial_count};
use gradscope::stats::{HIST_BINS, RawStats};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

const LENGTHS: &[usize] = &[1, 2, 7, 255, 256, 257, 1021, 8191, 8192, 8193, 100_003];

/// One tensor through stats_partial + stats_finalize (one job), read back.
fn gpu_stats(ctx: &GpuContext, data: &[f32], saturation: Option<(f32, f32)>) -> RawStats {
    let x = ctx.upload("x", data).unwrap();
    let count = partial_count(data.len());
    let partials = ctx
        .storage_buffer("partials", count.max(1) as u64 * RECORD_BYTES)
        .unwrap();
    let records = ctx.storage_buffer("records", RECORD_BYTES).unwrap();
    let jobs = ctx
        .upload(
            "jobs",
            &[StatsJob {
                partial_base: 0,
                partial_count: count as u32,
                record: 0,
                _pad: 0,
            }],
        )
        .unwrap();
    let p = gpu::stats_partial(ctx, &x, data.len(), saturation, &partials, 0).unwrap();
    let f = gpu::stats_finalize(ctx, &partials, &jobs, &records, 1).unwrap();
    ctx.run(&[&p, &f]).unwrap();
    ctx.read::<RawStats>(&records, 1).unwrap()[0]
}

/// |got − want| ≤ atol + rtol·|want| in f64, with a message naming the case.
fn close(what: &str, field: &str, got: f32, want: f32, atol: f64, rtol: f64) {
    let (g, w) = (got as f64, want as f64);
    assert!(
        (g - w).abs() <= atol + rtol * w.abs() || (g.is_nan() && w.is_nan()) || g == w,
        "{what}: {field} got {got:e}, want {want:e} (|diff| {:e}, atol {atol:e}, rtol {rtol:e})",
        (g - w).abs()
    );
}

/// GPU record against the CPU twin's: counts and histogram exact, selections exact, the
/// accumulated floats within the tolerances of the header comment.
fn assert_records_agree(what: &str, got: &RawStats, want: &RawStats) {
    assert_eq!(
        (got.finite, got.nan, got.inf, got.zeros, got.saturated),
        (want.finite, want.nan, want.inf, want.zeros, want.saturated),
        "{what}: counts (finite, nan, inf, zeros, saturated)"
    );
    assert_eq!(got.hist, want.hist, "{what}: histogram");
    // Selections: the same element wins on both sides (== so that +0 and −0 agree).
    assert!(
        got.min == want.min,
        "{what}: min {} vs {}",
        got.min,
        want.min
    );
    assert!(
        got.max == want.max,
        "{what}: max {} vs {}",
        got.max,
        want.max
    );
    assert_eq!(
        got.max_abs.to_bits(),
        want.max_abs.to_bits(),
        "{what}: max_abs {} vs {}",
        got.max_abs,
        want.max_abs
    );
    let scale = want.max_abs as f64;
    close(what, "mean", got.mean, want.mean, 1e-6 * scale, 1e-5);
    // m2_scaled ≥ 0 is a sum of squares divided by max_abs²; when it cancels (nearly
    // constant data) the absolute error is set by the scaled squares that were summed, each
    // ≤ 1: n.
    let m2_atol = 1e-6 * want.finite as f64;
    close(
        what,
        "m2_scaled",
        got.m2_scaled,
        want.m2_scaled,
        m2_atol,
        1e-5,
    );
    close(what, "norm_ssq", got.norm_ssq, want.norm_ssq, 0.0, 1e-5);
    assert_eq!(got._pad, [0; 5], "{what}: padding");
}

fn check_gpu_vs_cpu(ctx: &GpuContext, what: &str, data: &[f32], sat: Option<(f32, f32)>) {
    let got = gpu_stats(ctx, data, sat);
    let want = cpu::stats_reduce(data, sat);
    assert_records_agree(what, &got, &want);
}

#[test]
fn naga_validates_stats_shader() {
    let src = gradscope::gpu::shaders::source("stats").unwrap();
    let module = naga::front::wgsl::parse_str(src).unwrap_or_else(|e| panic!("{e}"));
    naga::valid::Validator::new(
        naga::valid::ValidationFlags::all(),
        naga::valid::Capabilities::empty(),
    )
    .validate(&module)
    .unwrap_or_else(|e| panic!("{e:?}"));
}

#[test]
fn partial_count_is_chunks_of_8192() {
    assert_eq!(partial_count(0), 0);
    assert_eq!(partial_count(1), 1);
    assert_eq!(partial_count(8192), 1);
    assert_eq!(partial_count(8193), 2);
    assert_eq!(partial_count(100_003), 13);
}

#[test]
fn gpu_matches_cpu_on_random_data() {
    let Some(ctx) = common::gpu() else { return };
    for (i, &n) in LENGTHS.iter().enumerate() {
        let seed = 100 + i as u64;
        let data = common::random_vec(seed, n, -2.0, 3.0);
        check_gpu_vs_cpu(ctx, &format!("random seed {seed} len {n}"), &data, None);
        check_gpu_vs_cpu(
            ctx,
            &format!("random+saturation seed {seed} len {n}"),
            &data,
            Some((-1.5, 2.5)),
        );
    }
}

/// Random data salted with NaN, ±Inf, +0, −0 and subnormals of both signs.
fn salted(seed: u64, n: usize) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n)
        .map(|_| match rng.random_range(0..20u32) {
            0 => f32::NAN,
            1 => f32::INFINITY,
            2 => f32::NEG_INFINITY,
            3 => 0.0,
            4 => -0.0,
            5 => f32::from_bits(rng.random_range(1..0x0080_0000u32)),
            6 => -f32::from_bits(rng.random_range(1..0x0080_0000u32)),
            _ => rng.random_range(-4.0f32..4.0),
        })
        .collect()
}

#[test]
fn gpu_matches_cpu_on_special_values() {
    let Some(ctx) = common::gpu() else { return };
    for (i, &n) in LENGTHS.iter().enumerate() {
        let seed = 200 + i as u64;
        let data = salted(seed, n);
        check_gpu_vs_cpu(ctx, &format!("salted seed {seed} len {n}"), &data, None);
    }
    // Only non-finite values: no moments at all, the empty record's min/max.
    let data = [f32::NAN, f32::INFINITY, f32::NEG_INFINITY, f32::NAN];
    let got = gpu_stats(ctx, &data, Some((0.0, 1.0)));
    let want = cpu::stats_reduce(&data, Some((0.0, 1.0)));
    assert_eq!(
        bytemuck::bytes_of(&got),
        bytemuck::bytes_of(&want),
        "non-finite only"
    );
    assert_eq!(
        (want.nan, want.inf, want.finite, want.saturated),
        (2, 2, 0, 0)
    );
    assert_eq!(want.min, f32::INFINITY);
}

#[test]
fn cpu_counts_special_values_exactly() {
    let data = [
        1.0,
        -0.0,
        0.0,
        f32::NAN,
        -f32::NAN,
        f32::INFINITY,
        f32::NEG_INFINITY,
        1e-45,
        -2.0,
    ];
    let r = cpu::stats_reduce(&data, None);
    assert_eq!((r.finite, r.nan, r.inf, r.zeros), (5, 2, 2, 2));
    assert_eq!((r.min, r.max, r.max_abs), (-2.0, 1.0, 2.0));
    // 1.0 → log2 0 → bin 32; −2.0 → log2 1 → bin 32; 1e-45 (subnormal) → bin 0.
    let mut hist = [0u32; HIST_BINS];
    hist[32] = 2;
    hist[0] = 1;
    assert_eq!(r.hist, hist);
    close(
        "special",
        "norm",
        r.summary().norm as f32,
        5f32.sqrt(),
        0.0,
        1e-6,
    );
}

#[test]
fn all_zero_tensors() {
    for &n in &[1usize, 257, 5000] {
        let data: Vec<f32> = (0..n)
            .map(|i| if i % 3 == 0 { -0.0 } else { 0.0 })
            .collect();
        let want = cpu::stats_reduce(&data, None);
        assert_eq!((want.finite, want.zeros), (n as u32, n as u32), "len {n}");
        assert_eq!(want.hist, [0; HIST_BINS], "len {n}");
        assert_eq!(
            (want.max_abs, want.norm_ssq, want.mean, want.m2_scaled),
            (0.0, 0.0, 0.0, 0.0)
        );
        assert!(want.min == 0.0 && want.max == 0.0);
        if let Some(ctx) = common::gpu() {
            let got = gpu_stats(ctx, &data, None);
            assert_records_agree(&format!("all zero len {n}"), &got, &want);
        }
    }
}

/// Direct f64 L2 norm with its own scaling (values of 1e30 squared overflow f32, not f64).
fn norm_f64(data: &[f32]) -> f64 {
    data.iter()
        .map(|&v| (v as f64) * (v as f64))
        .sum::<f64>()
        .sqrt()
}

#[test]
fn extreme_magnitudes_keep_the_norm() {
    for (k, &(lo, hi)) in [(1e30f32, 4e30f32), (1e-30, 4e-30)].iter().enumerate() {
        for &n in &[7usize, 2049, 100_003] {
            let seed = 300 + 10 * k as u64 + n as u64;
            let mut rng = ChaCha8Rng::seed_from_u64(seed);
            let data: Vec<f32> = (0..n)
                .map(|_| {
                    let m = rng.random_range(lo..hi);
                    if rng.random_range(0..2u32) == 0 {
                        m
                    } else {
                        -m
                    }
                })
                .collect();
            let what = format!("magnitude {lo:e} seed {seed} len {n}");
            let want = cpu::stats_reduce(&data, None);
            let norm = want.summary().norm;
            let direct = norm_f64(&data);
            assert!(norm.is_finite() && norm > 0.0, "{what}: norm {norm}");
            // f32 accumulation of n terms in a tree: relative error well under 1e-5.
            assert!(
                (norm - direct).abs() <= 1e-5 * direct,
                "{what}: norm {norm:e} vs f64 {direct:e}"
            );
            if let Some(ctx) = common::gpu() {
                let got = gpu_stats(ctx, &data, None);
                assert_records_agree(&what, &got, &want);
                let g = got.summary().norm;
                assert!(
                    (g - direct).abs() <= 1e-5 * direct,
                    "{what}: GPU norm {g:e} vs f64 {direct:e}"
                );
            }
        }
    }
}

/// Direct f64 mean and population standard deviation (two passes; f64 holds 1e30² and
/// 1e-30² without trouble).
fn mean_std_f64(data: &[f32]) -> (f64, f64) {
    let n = data.len() as f64;
    let mean = data.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = data
        .iter()
        .map(|&v| (v as f64 - mean) * (v as f64 - mean))
        .sum::<f64>()
        / n;
    (mean, var.sqrt())
}

/// Exploding and vanishing magnitudes: an unscaled M2 would be Σ(1e30)² = inf or
/// Σ(1e-30)² = 0 in f32, so std would read inf or 0. With M2 stored divided by max_abs²,
/// std keeps the f32 accuracy of ordinary data (1e-4 relative, as in
/// `cpu_twin_matches_direct_f64`).
#[test]
fn extreme_magnitudes_keep_the_std() {
    // (label, seed, data): symmetric and one-sided magnitudes near 1e30 and 1e-30; vanishing
    // values with a few 1e20 outliers, so that max_abs jumps by 50 decades mid-walk and in
    // merges; and outliers first or last in a chunk lane.
    let gen_signed = |seed: u64, n: usize, lo: f32, hi: f32, signed: bool| -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n)
            .map(|_| {
                let m = rng.random_range(lo..hi);
                if signed && rng.random_range(0..2u32) == 0 {
                    -m
                } else {
                    m
                }
            })
            .collect()
    };
    let mut cases: Vec<(String, Vec<f32>)> = Vec::new();
    for &n in &[7usize, 2049, 100_003] {
        for (k, &(lo, hi)) in [(1e30f32, 4e30f32), (1e-30, 4e-30)].iter().enumerate() {
            for signed in [true, false] {
                let seed = 1000 + n as u64 + 10 * k as u64 + signed as u64;
                cases.push((
                    format!("[{lo:e}, {hi:e}) signed {signed} seed {seed} len {n}"),
                    gen_signed(seed, n, lo, hi, signed),
                ));
            }
        }
        // 1e-30-sized values with a few ±1e20 (every 997th element, and the very last).
        let seed = 1100 + n as u64;
        let mut data = gen_signed(seed, n, 1e-30, 4e-30, true);
        let mut rng = ChaCha8Rng::seed_from_u64(seed + 1);
        for i in (0..n).step_by(997).chain([n - 1]) {
            let m: f32 = rng.random_range(1e20..3e20);
            data[i] = if i % 2 == 0 { m } else { -m };
        }
        cases.push((
            format!("1e-30 with 1e20 outliers seed {seed} len {n}"),
            data,
        ));
    }
    // Near-constant data at 1e30 (std ≈ 6e-4·mean, so the deviations nearly cancel).
    let seed = 1200;
    let data: Vec<f32> = gen_signed(seed, 5000, 0.999, 1.001, false)
        .iter()
        .map(|&v| v * 1e30)
        .collect();
    cases.push((format!("1e30·[0.999, 1.001) seed {seed} len 5000"), data));

    for (what, data) in &cases {
        let (_, want) = mean_std_f64(data);
        assert!(want.is_finite() && want > 0.0, "{what}: f64 std {want}");
        let want_rec = cpu::stats_reduce(data, None);
        let s = want_rec.summary();
        assert!(
            s.std.is_finite() && s.std > 0.0 && (s.std - want).abs() <= 1e-4 * want,
            "{what}: CPU std {:e} vs f64 {want:e}",
            s.std
        );
        if let Some(ctx) = common::gpu() {
            let got = gpu_stats(ctx, data, None);
            assert_records_agree(what, &got, &want_rec);
            let g = got.summary().std;
            assert!(
                g.is_finite() && g > 0.0 && (g - want).abs() <= 1e-4 * want,
                "{what}: GPU std {g:e} vs f64 {want:e}"
            );
        }
    }
}

/// Merging records of very different scales (as `stats_finalize` does across chunks):
/// a small-scale record absorbed by a large one and the reverse give the f64 std.
#[test]
fn merge_across_scales_keeps_the_std() {
    for &(seed, lo_a, lo_b) in &[(1300u64, 1e-30f32, 1e20f32), (1301, 1e30, 1e-30)] {
        let a = common::random_vec(seed, 300, lo_a, 2.0 * lo_a);
        let b = common::random_vec(seed + 1, 500, -2.0 * lo_b, lo_b);
        let (ra, rb) = (cpu::stats_reduce(&a, None), cpu::stats_reduce(&b, None));
        let all: Vec<f32> = a.iter().chain(&b).copied().collect();
        let (_, want) = mean_std_f64(&all);
        for (order, mut m, other) in [("a⊕b", ra, rb), ("b⊕a", rb, ra)] {
            m.merge(&other);
            let got = m.summary().std;
            assert!(
                got.is_finite() && (got - want).abs() <= 1e-4 * want,
                "seed {seed} {order}: std {got:e} vs f64 {want:e}"
            );
        }
    }
}

#[test]
fn saturation_counts() {
    // Sigmoid-like outputs in (0, 1); saturated means ≤ 0.01 or ≥ 0.99 (bounds included).
    let mut data = common::random_vec(400, 10_007, 0.0, 1.0);
    data[3] = 0.01;
    data[4] = 0.99;
    data[5] = f32::NAN; // never saturated
    let sat = Some((0.01f32, 0.99f32));
    let direct = data
        .iter()
        .filter(|&&v| v.is_finite() && (v <= 0.01 || v >= 0.99))
        .count() as u32;
    let want = cpu::stats_reduce(&data, sat);
    assert_eq!(want.saturated, direct);
    assert!(
        direct > 150,
        "the test data must saturate somewhere: {direct}"
    );
    assert_eq!(cpu::stats_reduce(&data, None).saturated, 0);
    if let Some(ctx) = common::gpu() {
        let got = gpu_stats(ctx, &data, sat);
        assert_eq!(got.saturated, direct, "GPU saturated count");
        assert_records_agree("saturation", &got, &want);
        assert_eq!(gpu_stats(ctx, &data, None).saturated, 0);
    }
}

#[test]
fn cpu_twin_matches_direct_f64() {
    for &(seed, n, lo, hi) in &[
        (500u64, 100_003usize, -1.0f32, 3.0f32),
        (501, 2049, 1000.0, 1001.0),
        (502, 7, -5.0, 5.0),
    ] {
        let what = format!("seed {seed} len {n} range [{lo}, {hi})");
        let data = common::random_vec(seed, n, lo, hi);
        let s = cpu::stats_reduce(&data, None).summary();
        let v: Vec<f64> = data.iter().map(|&x| x as f64).collect();
        let nf = n as f64;
        let mean = v.iter().sum::<f64>() / nf;
        let var = v.iter().map(|x| (x - mean) * (x - mean)).sum::<f64>() / nf;
        let norm = v.iter().map(|x| x * x).sum::<f64>().sqrt();
        let min = v.iter().cloned().fold(f64::INFINITY, f64::min);
        let max = v.iter().cloned().fold(f64::NEG_INFINITY, f64::max);
        let max_abs = v.iter().map(|x| x.abs()).fold(0.0, f64::max);
        assert_eq!(s.count, n as u64, "{what}");
        // Welford/Chan in f32 keeps the mean to a few ULP of the data's scale and the
        // variance to ~1e-5 relative, even for data offset by 1000 (where a naive Σx² − n·mean²
        // in f32 would lose every digit).
        assert!(
            (s.mean - mean).abs() <= 1e-6 * max_abs,
            "{what}: mean {} vs {mean}",
            s.mean
        );
        assert!(
            (s.std - var.sqrt()).abs() <= 1e-4 * var.sqrt(),
            "{what}: std {} vs {}",
            s.std,
            var.sqrt()
        );
        assert!(
            (s.norm - norm).abs() <= 1e-5 * norm,
            "{what}: norm {} vs {norm}",
            s.norm
        );
        assert_eq!((s.min, s.max, s.max_abs), (min, max, max_abs), "{what}");
        let mut hist = vec![0u32; HIST_BINS];
        for &x in &v {
            // floor(log2|x|) in f64, binned independently of RawStats::hist_bin.
            let e = x.abs().log2().floor() as i64;
            hist[((e + 64).div_euclid(2)).clamp(0, HIST_BINS as i64 - 1) as usize] += 1;
        }
        assert_eq!(s.hist, hist, "{what}: histogram");
    }
}

#[test]
fn cpu_twin_converts_f64_to_f32_first() {
    let v = common::random_vec_f64(600, 3001, -3.0, 3.0);
    let f: Vec<f32> = v.iter().map(|&x| x as f32).collect();
    let a = cpu::stats_reduce(&v, Some((-2.0, 2.0)));
    let b = cpu::stats_reduce(&f, Some((-2.0, 2.0)));
    assert_eq!(bytemuck::bytes_of(&a), bytemuck::bytes_of(&b));
}

#[test]
fn two_gpu_runs_are_bit_identical() {
    let Some(ctx) = common::gpu() else { return };
    let data = salted(700, 100_003);
    let a = gpu_stats(ctx, &data, Some((-1.0, 1.0)));
    let b = gpu_stats(ctx, &data, Some((-1.0, 1.0)));
    assert_eq!(bytemuck::bytes_of(&a), bytemuck::bytes_of(&b));
    let data = common::random_vec(701, 100_003, -1.0, 1.0);
    let a = gpu_stats(ctx, &data, None);
    let b = gpu_stats(ctx, &data, None);
    assert_eq!(bytemuck::bytes_of(&a), bytemuck::bytes_of(&b));
}

#[test]
fn several_jobs_in_one_finalize() {
    let Some(ctx) = common::gpu() else { return };
    // Four tensors (one empty) share one partials buffer; their records go to slots in a
    // different order than their partials, and slot 4 is written by no job.
    let lens = [300usize, 0, 5000, 2049, 100_003];
    let slots = [3u32, 0, 4, 1, 2];
    let tensors: Vec<Vec<f32>> = lens
        .iter()
        .enumerate()
        .map(|(i, &n)| salted(800 + i as u64, n))
        .collect();
    let total: usize = lens.iter().map(|&n| partial_count(n)).sum();
    let partials = ctx
        .storage_buffer("partials", total as u64 * RECORD_BYTES)
        .unwrap();
    let records = ctx
        .storage_buffer("records", lens.len() as u64 * RECORD_BYTES)
        .unwrap();
    let mut jobs = Vec::new();
    let mut dispatches = Vec::new();
    let mut inputs = Vec::new();
    let mut base = 0usize;
    for (i, t) in tensors.iter().enumerate() {
        let sat = if i == 2 { Some((-0.5, 0.5)) } else { None };
        let x = ctx.upload("x", t).unwrap();
        dispatches.push(gpu::stats_partial(ctx, &x, t.len(), sat, &partials, base).unwrap());
        inputs.push(x);
        jobs.push(StatsJob {
            partial_base: base as u32,
            partial_count: partial_count(t.len()) as u32,
            record: slots[i],
            _pad: 0,
        });
        base += partial_count(t.len());
    }
    let jobs_buf = ctx.upload("jobs", &jobs).unwrap();
    dispatches.push(gpu::stats_finalize(ctx, &partials, &jobs_buf, &records, jobs.len()).unwrap());
    ctx.run(&dispatches.iter().collect::<Vec<_>>()).unwrap();
    let got = ctx.read::<RawStats>(&records, lens.len()).unwrap();
    for (i, t) in tensors.iter().enumerate() {
        let sat = if i == 2 { Some((-0.5, 0.5)) } else { None };
        let want = cpu::stats_reduce(t, sat);
        let what = format!("job {i} (len {}, record {})", lens[i], slots[i]);
        assert_records_agree(&what, &got[slots[i] as usize], &want);
    }
    assert_eq!(
        bytemuck::bytes_of(&got[slots[1] as usize]),
        bytemuck::bytes_of(&RawStats::empty()),
        "the empty tensor's record is RawStats::empty()"
    );
}

#[test]
fn launchers_refuse_short_buffers() {
    let Some(ctx) = common::gpu() else { return };
    let x = ctx.upload("x", &[0f32; 100]).unwrap();
    let small = ctx.storage_buffer("partials", RECORD_BYTES).unwrap();
    let err = gpu::stats_partial(ctx, &x, 101, None, &small, 0).unwrap_err();
    assert!(err.to_string().contains("x buffer"), "{err}");
    // Two chunks need two partial records.
    let big = ctx.upload("x", &vec![0f32; 9000]).unwrap();
    let err = gpu::stats_partial(ctx, &big, 9000, None, &small, 0).unwrap_err();
    assert!(err.to_string().contains("partials"), "{err}");
    let tiny = ctx.storage_buffer("partials", 4).unwrap();
    let err = gpu::stats_partial(ctx, &x, 0, None, &tiny, 0).unwrap_err();
    assert!(err.to_string().contains("partials"), "{err}");
    let out = ctx.storage_buffer("out", 8).unwrap();
    let err = gpu::dead_units(ctx, &x, 10, 10, &out, 2).unwrap_err();
    assert!(err.to_string().contains("out"), "{err}");
}

fn gpu_dead_units(ctx: &GpuContext, y: &[f32], rows: usize, cols: usize) -> u32 {
    let yb = ctx.upload("y", y).unwrap();
    // Write into slot 2 of a sentinel-filled buffer: the neighbours must stay untouched.
    let out = ctx.upload("out", &[7u32; 4]).unwrap();
    let d = gpu::dead_units(ctx, &yb, rows, cols, &out, 2).unwrap();
    ctx.run(&[&d]).unwrap();
    let back = ctx.read::<u32>(&out, 4).unwrap();
    assert_eq!(
        (back[0], back[1], back[3]),
        (7, 7, 7),
        "dead_units wrote outside index"
    );
    back[2]
}

#[test]
fn dead_units_hand_made_and_random() {
    // 13 × 300 (the device tests eight rows at a time, then the last five one by one):
    // columns 3, 17, 256 and 299 are dead (one holds −0.0); alive are column 40, zero but
    // for one NaN, 41 but for one subnormal (in the last five rows), 42 but for the last
    // row, and 43 but for the eighth row.
    let (rows, cols) = (13usize, 300usize);
    let mut y = common::random_vec(900, rows * cols, 0.1, 1.0);
    for &c in &[3usize, 17, 256, 299, 40, 41, 42, 43] {
        for r in 0..rows {
            y[r * cols + c] = 0.0;
        }
    }
    y[9 * cols + 17] = -0.0;
    y[cols + 40] = f32::NAN;
    y[10 * cols + 41] = 1e-42;
    y[12 * cols + 42] = 0.5;
    y[7 * cols + 43] = 0.25;
    assert_eq!(cpu::dead_units(&y, rows, cols), 4);
    let y64: Vec<f64> = y.iter().map(|&v| v as f64).collect();
    assert_eq!(cpu::dead_units(&y64, rows, cols), 4);

    // ReLU-like outputs of a layer where some units never fire.
    let mut rng = ChaCha8Rng::seed_from_u64(901);
    let shapes = [(1usize, 1usize), (7, 13), (31, 257), (64, 600)];
    let relu: Vec<(usize, usize, Vec<f32>)> = shapes
        .iter()
        .map(|&(r, c)| {
            let dead: Vec<bool> = (0..c).map(|_| rng.random_range(0..4u32) == 0).collect();
            let v = (0..r * c)
                .map(|i| {
                    let x: f32 = rng.random_range(-1.0..1.0);
                    if dead[i % c] { 0.0 } else { x.max(0.0) }
                })
                .collect();
            (r, c, v)
        })
        .collect();

    let Some(ctx) = common::gpu() else { return };
    assert_eq!(gpu_dead_units(ctx, &y, rows, cols), 4, "hand-made 13×300");
    for (r, c, v) in &relu {
        let want = cpu::dead_units(v, *r, *c);
        assert_eq!(
            gpu_dead_units(ctx, v, *r, *c),
            want,
            "relu {r}×{c} seed 901"
        );
    }
}

/// `stats_partial_multi` writes every tensor's partial records bit for bit as one
/// `stats_partial` per tensor does: 16 tensors (one empty), as many as the device's width
/// takes, and a partial set (3 tensors), partial ranges laid out in another order than the
/// tensors, saturation on some.
#[test]
fn multi_dispatch_matches_single_dispatches_bit_for_bit() {
    let Some(ctx) = common::gpu() else { return };
    if gpu::multi_capacity(ctx) == 0 {
        eprintln!("skipping: the adapter has too few storage buffers per stage");
        return;
    }
    let width = gpu::multi_capacity(ctx);
    let sixteen = [
        300usize, 0, 5000, 8193, 100_003, 1, 8191, 8, 4096, 16_385, 13, 8192, 9000, 1, 700, 3,
    ];
    // Every slot of the device's width, the lengths around the chunk again.
    let full: Vec<usize> = (0..width).map(|i| sixteen[i % 16] + i / 16).collect();
    for lens in [
        &sixteen[..sixteen.len().min(width)],
        &full[..],
        &[7usize, 4096, 2][..],
        // A group of one: the executor groups every statistics op where it can.
        &[2049usize][..],
    ] {
        let tensors: Vec<Vec<f32>> = lens
            .iter()
            .enumerate()
            .map(|(i, &n)| salted(900 + i as u64, n))
            .collect();
        let sats: Vec<Option<(f32, f32)>> = (0..lens.len())
            .map(|i| (i % 3 == 1).then_some((-0.5, 0.5)))
            .collect();
        // Partial ranges in reverse tensor order.
        let mut bases = vec![0usize; lens.len()];
        let mut base = 0;
        for i in (0..lens.len()).rev() {
            bases[i] = base;
            base += partial_count(lens[i]);
        }
        let bytes = base.max(1) as u64 * RECORD_BYTES;
        let single = ctx.storage_buffer("single", bytes).unwrap();
        let multi = ctx.storage_buffer("multi", bytes).unwrap();
        let inputs: Vec<_> = tensors
            .iter()
            .map(|t| ctx.upload("x", t).unwrap())
            .collect();
        let mut dispatches = Vec::new();
        for i in 0..lens.len() {
            dispatches.push(
                gpu::stats_partial(ctx, &inputs[i], lens[i], sats[i], &single, bases[i]).unwrap(),
            );
        }
        let jobs: Vec<gpu::PartialJob<'_>> = (0..lens.len())
            .map(|i| gpu::PartialJob {
                x: &inputs[i],
                len: lens[i],
                saturation: sats[i],
                partial_base: bases[i],
            })
            .collect();
        dispatches.push(gpu::stats_partial_multi(ctx, &jobs, &multi).unwrap());
        ctx.run(&dispatches.iter().collect::<Vec<_>>()).unwrap();
        let a = ctx.read::<RawStats>(&single, base).unwrap();
        let b = ctx.read::<RawStats>(&multi, base).unwrap();
        for (k, (x, y)) in a.iter().zip(&b).enumerate() {
            assert_eq!(
                bytemuck::bytes_of(x),
                bytemuck::bytes_of(y),
                "partial record {k} of lengths {lens:?}"
            );
        }
    }
}

#[test]
fn multi_dispatch_refuses_bad_job_lists() {
    let Some(ctx) = common::gpu() else { return };
    if gpu::multi_capacity(ctx) == 0 {
        return;
    }
    let x = ctx.upload("x", &[0f32; 100]).unwrap();
    let width = gpu::multi_capacity(ctx);
    let partials = ctx
        .storage_buffer("partials", (width as u64 + 1) * RECORD_BYTES)
        .unwrap();
    let err = gpu::stats_partial_multi(ctx, &[], &partials).unwrap_err();
    assert!(
        err.to_string().contains(&format!("1 to {width} tensors")),
        "{err}"
    );
    let too_many: Vec<gpu::PartialJob<'_>> = (0..width + 1)
        .map(|i| gpu::PartialJob {
            x: &x,
            len: 100,
            saturation: None,
            partial_base: i,
        })
        .collect();
    let err = gpu::stats_partial_multi(ctx, &too_many, &partials).unwrap_err();
    assert!(
        err.to_string().contains(&format!("got {}", width + 1)),
        "{err}"
    );
    let short = [gpu::PartialJob {
        x: &x,
        len: 101,
        saturation: None,
        partial_base: 0,
    }];
    let err = gpu::stats_partial_multi(ctx, &short, &partials).unwrap_err();
    assert!(err.to_string().contains("x buffer"), "{err}");
}

/// The subgroup build of the reduction tree (its last levels in shuffles) gives the bits of
/// the workgroup-memory tree: partial and finalize records, one tensor and several in one
/// dispatch, on sizes around the 8192-element chunk, special values and extreme scales.
/// On an adapter with subgroups, the shared context must be using them.
#[test]
fn subgroup_tree_gives_the_bits_of_the_workgroup_tree() {
    let Some(shared) = common::gpu() else { return };
    if !shared.features.contains(wgpu::Features::SUBGROUP) {
        assert!(shared.subgroup_size.is_none());
        return;
    }
    if std::env::var("GRADSCOPE_SUBGROUPS").is_err() {
        assert!(
            shared.subgroup_size.is_some(),
            "the adapter has subgroups but the reductions do not use them"
        );
    }
    let request = gradscope::gpu::AdapterRequest::default();
    let with = GpuContext::new(&request).unwrap();
    let mut without = GpuContext::new(&request).unwrap();
    without.subgroup_size = None;
    let Some(sg) = with.subgroup_size else { return };
    for (i, n) in [1usize, 8191, 8192, 8193, 3 * 8192 + 5, 100_003]
        .into_iter()
        .enumerate()
    {
        let data = salted(900 + i as u64, n);
        for sat in [None, Some((-0.5, 0.5))] {
            let a = gpu_stats(&with, &data, sat);
            let b = gpu_stats(&without, &data, sat);
            assert_eq!(
                bytemuck::bytes_of(&a),
                bytemuck::bytes_of(&b),
                "n {n} saturation {sat:?}: subgroup width {sg} against workgroup memory"
            );
        }
    }
    // Values of every scale in one tensor: the merges rescale at every level.
    let mut rng = ChaCha8Rng::seed_from_u64(77);
    let wide: Vec<f32> = (0..50_000)
        .map(|_| {
            let e: i32 = rng.random_range(-120..120);
            rng.random_range(-1.0f32..1.0) * 2f32.powi(e)
        })
        .collect();
    assert_eq!(
        bytemuck::bytes_of(&gpu_stats(&with, &wide, None)),
        bytemuck::bytes_of(&gpu_stats(&without, &wide, None)),
        "wide scales"
    );
}

/// Every count of the CPU twin against a direct per-element count, on random bit patterns
/// (every exponent, so every histogram bin, NaN, ±∞ and subnormals) mixed with zeros, at
/// lengths around the twin's vector and chunk sizes.
#[test]
fn cpu_counts_match_a_direct_count() {
    let mut rng = ChaCha8Rng::seed_from_u64(900);
    for n in [1usize, 15, 16, 17, 63, 64, 65, 4095, 4096, 4097, 12_289] {
        let data: Vec<f32> = (0..n)
            .map(|_| match rng.random_range(0..6u32) {
                0 => 0.0,
                1 => -0.0,
                _ => f32::from_bits(rng.random()),
            })
            .collect();
        for sat in [None, Some((-1e-3f32, 1e6f32))] {
            let r = cpu::stats_reduce(&data, sat);
            let finite: Vec<f32> = data.iter().copied().filter(|v| v.is_finite()).collect();
            let mut hist = [0u32; HIST_BINS];
            for &v in finite.iter().filter(|v| **v != 0.0) {
                hist[RawStats::hist_bin(v)] += 1;
            }
            let saturated = sat.map_or(0, |(lo, hi)| {
                finite.iter().filter(|&&v| v <= lo || v >= hi).count()
            });
            let what = format!("len {n}, saturation {sat:?}");
            assert_eq!(r.hist, hist, "{what}: histogram");
            assert_eq!(
                (r.finite, r.nan, r.inf, r.zeros, r.saturated),
                (
                    finite.len() as u32,
                    data.iter().filter(|v| v.is_nan()).count() as u32,
                    data.iter().filter(|v| v.is_infinite()).count() as u32,
                    finite.iter().filter(|&&v| v == 0.0).count() as u32,
                    saturated as u32,
                ),
                "{what}: counts"
            );
            let min = finite.iter().copied().fold(f32::INFINITY, f32::min);
            let max = finite.iter().copied().fold(f32::NEG_INFINITY, f32::max);
            assert_eq!((r.min, r.max), (min, max), "{what}: min and max");
        }
    }
}
