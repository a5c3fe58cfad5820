//! The bench's correctness check can fail: a CPU reference that differs from what the GPU
//! computes is caught, named, and turns the whole run into an error; a right one passes.

mod common;

use gradscope::bench::case::Case;
use gradscope::bench::options::BenchOptions;
use gradscope::bench::runner::run_case;
use gradscope::gpu::timer::{GpuTimer, GpuTiming};
use gradscope::ops::{MatmulLayout, MatmulShape};

fn matmul_case() -> Case {
    gradscope::bench::matmul::case(
        "matmul_nt".into(),
        MatmulLayout::NT,
        MatmulShape { m: 7, n: 13, k: 5 },
    )
}

fn opts() -> BenchOptions {
    BenchOptions {
        repeats: 1,
        warmup: 0,
        ..BenchOptions::default()
    }
}

#[test]
fn agreeing_kernels_pass_and_a_wrong_reference_fails() {
    let Some(ctx) = common::gpu() else { return };
    for method in [GpuTiming::best_per_pass(ctx), GpuTiming::HostClock] {
        let timer = GpuTimer::new(ctx, method, 1).unwrap();
        let ok = run_case(matmul_case(), &opts(), Some((ctx, &timer))).unwrap();
        assert!(!ok.failed(), "{ok:?}");
        assert!(ok.max_rel_error.unwrap() < 1e-5, "{ok:?}");
        assert_eq!(ok.gpu.as_ref().unwrap().timing, Some(method));

        // The CPU "twin" now computes 1.01·C: every element off by 1 %.
        let mut wrong = matmul_case();
        let mut right = std::mem::replace(&mut wrong.cpu, Box::new(|_| Ok(())));
        wrong.cpu = Box::new(move |t| {
            right(t)?;
            let mut c = t.take_f(2);
            c.iter_mut().for_each(|v| *v *= 1.01);
            t.put_f(2, c);
            Ok(())
        });
        let bad = run_case(wrong, &opts(), Some((ctx, &timer))).unwrap();
        assert!(bad.failed(), "{bad:?}");
        let e = bad.max_rel_error.unwrap();
        assert!((0.005..0.02).contains(&e), "error {e}");
        assert!(
            bad.error_at.starts_with("c: worst at index"),
            "{}",
            bad.error_at
        );
    }
}

#[test]
fn cpu_only_runs_have_no_check() {
    let r = run_case(
        matmul_case(),
        &BenchOptions {
            gpu: false,
            ..opts()
        },
        None,
    )
    .unwrap();
    assert!(r.gpu.is_none() && r.max_rel_error.is_none() && !r.failed());
    assert!(r.cpu.unwrap().throughput > 0.0);
}
