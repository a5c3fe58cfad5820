//! Helpers shared by the integration tests: the one `assert_close`, seeded inputs, and the
//! GPU context that skips (or fails under REQUIRE_GPU=1) where no adapter exists.
#![allow(dead_code)]

use std::sync::{Arc, OnceLock};

use gradscope::gpu::{AdapterRequest, GpuContext};
use rand::{RngExt, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// |a − b| ≤ atol + rtol·|b| everywhere, or a panic naming the worst index, both values and
/// the error. `what` says which tensor (and the seed and shape, so a failure can be rerun).
pub fn assert_close(what: &str, got: &[f32], want: &[f32], atol: f32, rtol: f32) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: length {} != {}",
        got.len(),
        want.len()
    );
    let mut worst: Option<(usize, f32)> = None;
    let mut failures = 0usize;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let same_nonfinite = (g.is_nan() && w.is_nan()) || (g.is_infinite() && g == w);
        let err = (g - w).abs();
        let ok = same_nonfinite || err <= atol + rtol * w.abs();
        if !ok {
            failures += 1;
            let excess = if err.is_nan() {
                f32::INFINITY
            } else {
                err - (atol + rtol * w.abs())
            };
            if worst.is_none_or(|(_, e)| excess > e) {
                worst = Some((i, excess));
            }
        }
    }
    if let Some((i, _)) = worst {
        panic!(
            "{what}: {failures} of {} elements differ (atol {atol}, rtol {rtol}); worst at index {i}: got {}, want {}, |diff| {}",
            got.len(),
            got[i],
            want[i],
            (got[i] - want[i]).abs()
        );
    }
}

/// f64 version for finite-difference checks.
pub fn assert_close_f64(what: &str, got: &[f64], want: &[f64], atol: f64, rtol: f64) {
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: length {} != {}",
        got.len(),
        want.len()
    );
    let mut worst: Option<(usize, f64)> = None;
    for (i, (&g, &w)) in got.iter().zip(want).enumerate() {
        let err = (g - w).abs();
        if err.is_nan() || err > atol + rtol * w.abs() {
            let excess = err - (atol + rtol * w.abs());
            if worst.is_none_or(|(_, e)| excess > e) {
                worst = Some((i, excess));
            }
        }
    }
    if let Some((i, _)) = worst {
        panic!(
            "{what}: worst at index {i}: got {}, want {}, |diff| {} (atol {atol}, rtol {rtol})",
            got[i],
            want[i],
            (got[i] - want[i]).abs()
        );
    }
}

/// `n` values uniform in [lo, hi) from a seeded generator.
pub fn random_vec(seed: u64, n: usize, lo: f32, hi: f32) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// `n` values uniform in [lo, hi) in f64.
pub fn random_vec_f64(seed: u64, n: usize, lo: f64, hi: f64) -> Vec<f64> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(lo..hi)).collect()
}

/// `n` integers in [0, bound).
pub fn random_labels(seed: u64, n: usize, bound: u32) -> Vec<u32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| rng.random_range(0..bound)).collect()
}

/// The shared GPU context, or None (with a message) when there is no adapter. With
/// REQUIRE_GPU=1 a missing adapter fails the test instead of skipping it.
pub fn gpu() -> Option<&'static GpuContext> {
    shared_gpu().as_deref()
}

/// The same context as an `Arc`, for executors that keep one.
pub fn gpu_arc() -> Option<Arc<GpuContext>> {
    shared_gpu().clone()
}

fn shared_gpu() -> &'static Option<Arc<GpuContext>> {
    static CTX: OnceLock<Option<Arc<GpuContext>>> = OnceLock::new();
    CTX.get_or_init(|| match GpuContext::new(&AdapterRequest::default()) {
        Ok(ctx) => Some(Arc::new(ctx)),
        Err(e) => {
            if std::env::var("REQUIRE_GPU").is_ok_and(|v| v == "1") {
                panic!("REQUIRE_GPU=1 but no GPU context: {e}");
            }
            eprintln!("skipping GPU test: {e}");
            None
        }
    })
}
