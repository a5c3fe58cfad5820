//! float32 matmul throughput of the CPU executor's GEMM (`cpu::matmul`, through the `gemm`
//! crate) against `matrixmultiply` (the crate it replaced) and, when given its JSON, numpy's
//! BLAS measured by `benches/compare/numpy_matmul.py` at the same sizes and layouts.
//!
//! `cargo bench --bench cpu_matmul [-- --repeats R --numpy numpy.json --json]`
//!
//! Threads: rayon's pool for `gemm` (RAYON_NUM_THREADS, default every core) and
//! MATMUL_NUM_THREADS for `matrixmultiply` (default every physical core); the table names
//! both. Each size: a warm-up product, then the median of R timed runs of about 0.2 s each.

use std::time::Instant;

use gradscope::cpu::matmul::matmul;
use gradscope::ops::{MatmulLayout, MatmulShape};

/// (name, M, K, N, layout): the same list, in the same order, as numpy_matmul.py. Square
/// products, then those of an MLP 784-256-256-10 step at batch 128.
const SIZES: [(&str, usize, usize, usize, MatmulLayout); 8] = [
    ("square", 256, 256, 256, MatmulLayout::NN),
    ("square", 512, 512, 512, MatmulLayout::NN),
    ("square", 1024, 1024, 1024, MatmulLayout::NN),
    ("square", 2048, 2048, 2048, MatmulLayout::NN),
    ("mlp fwd 1", 128, 784, 256, MatmulLayout::NT),
    ("mlp fwd 2", 128, 256, 256, MatmulLayout::NT),
    ("mlp dW 1", 256, 128, 784, MatmulLayout::TN),
    ("mlp dx 2", 128, 256, 256, MatmulLayout::NN),
];

/// Median GFLOP/s of `repeats` runs of `f` (one product per call).
fn measure(flop: f64, repeats: usize, mut f: impl FnMut()) -> f64 {
    f();
    let start = Instant::now();
    let mut reps = 0usize;
    while start.elapsed().as_secs_f64() < 0.05 {
        f();
        reps += 1;
    }
    let per_run = ((reps as f64 * 0.2 / start.elapsed().as_secs_f64()) as usize).max(1);
    let mut rates: Vec<f64> = (0..repeats)
        .map(|_| {
            let t = Instant::now();
            for _ in 0..per_run {
                f();
            }
            flop * per_run as f64 / t.elapsed().as_secs_f64() / 1e9
        })
        .collect();
    rates.sort_by(|a, b| a.total_cmp(b));
    rates[repeats / 2]
}

/// C = op(A)·op(B) through matrixmultiply with the strides `cpu::matmul` uses.
fn mm_sgemm(layout: MatmulLayout, s: MatmulShape, a: &[f32], b: &[f32], c: &mut [f32]) {
    let (m, n, k) = (s.m as isize, s.n as isize, s.k as isize);
    let [rsa, csa, rsb, csb] = match layout {
        MatmulLayout::NN => [k, 1, n, 1],
        MatmulLayout::NT => [k, 1, 1, k],
        MatmulLayout::TN => [1, m, n, 1],
    };
    // SAFETY: a is M·K, b is K·N and c is M·N elements, which these strides stay within.
    unsafe {
        matrixmultiply::sgemm(
            s.m,
            s.k,
            s.n,
            1.0,
            a.as_ptr(),
            rsa,
            csa,
            b.as_ptr(),
            rsb,
            csb,
            0.0,
            c.as_mut_ptr(),
            n,
            1,
        )
    }
}

fn cpu_name() -> String {
    std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("model name"))
                .map(|l| l.split(':').nth(1).unwrap_or("").trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".into())
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    let flag = |name: &str| {
        args.iter()
            .position(|a| a == name)
            .and_then(|i| args.get(i + 1))
            .cloned()
    };
    let repeats: usize = flag("--repeats")
        .and_then(|s| s.parse().ok())
        .unwrap_or(7)
        .max(1);
    let json = args.iter().any(|a| a == "--json");
    // numpy's GFLOP/s by (name, M, K, N), from numpy_matmul.py --json.
    let numpy: Vec<(String, usize, usize, usize, f64)> = flag("--numpy")
        .map(|path| {
            let text = std::fs::read_to_string(&path).expect("reading the numpy JSON");
            let v: serde_json::Value = serde_json::from_str(&text).expect("parsing the numpy JSON");
            v["results"]
                .as_array()
                .expect("numpy JSON has `results`")
                .iter()
                .map(|r| {
                    let u = |k: &str| r[k].as_u64().unwrap_or(0) as usize;
                    (
                        r["name"].as_str().unwrap_or("").to_string(),
                        u("m"),
                        u("k"),
                        u("n"),
                        r["gflops"].as_f64().unwrap_or(f64::NAN),
                    )
                })
                .collect()
        })
        .unwrap_or_default();

    let mut rows = Vec::new();
    for (name, m, k, n, layout) in SIZES {
        let shape = MatmulShape { m, n, k };
        let a: Vec<f32> = (0..m * k)
            .map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let b: Vec<f32> = (0..k * n)
            .map(|i| ((i * 104729) % 1000) as f32 / 500.0 - 1.0)
            .collect();
        let mut c = vec![0f32; m * n];
        let flop = 2.0 * (m * k * n) as f64;
        let ours = measure(flop, repeats, || {
            matmul(layout, shape, &a, &b, &mut c, false).unwrap()
        });
        let mm = measure(flop, repeats, || mm_sgemm(layout, shape, &a, &b, &mut c));
        let np = numpy
            .iter()
            .find(|r| (r.0.as_str(), r.1, r.2, r.3) == (name, m, k, n))
            .map(|r| r.4);
        rows.push((name, m, k, n, layout, ours, mm, np));
    }

    if json {
        let v: Vec<serde_json::Value> = rows
            .iter()
            .map(|&(name, m, k, n, layout, ours, mm, np)| {
                serde_json::json!({"name": name, "m": m, "k": k, "n": n,
                    "layout": format!("{layout:?}"), "gemm_gflops": ours,
                    "matrixmultiply_gflops": mm, "numpy_gflops": np})
            })
            .collect();
        println!("{}", serde_json::to_string_pretty(&v).unwrap());
        return;
    }
    println!(
        "{} — rayon {} threads (gemm), MATMUL_NUM_THREADS={} (matrixmultiply); float32, \
         median of {repeats} runs (GFLOP/s)",
        cpu_name(),
        rayon::current_num_threads(),
        std::env::var("MATMUL_NUM_THREADS").unwrap_or_else(|_| "unset: physical cores".into()),
    );
    println!(
        "{:<10} {:>5} {:>5} {:>5} {:>6} {:>9} {:>9} {:>9} {:>10}",
        "product", "M", "K", "N", "layout", "gemm", "matrixm.", "numpy", "gemm/numpy"
    );
    for (name, m, k, n, layout, ours, mm, np) in rows {
        let (np_s, ratio) = match np {
            Some(g) => (format!("{g:.1}"), format!("{:.0}%", 100.0 * ours / g)),
            None => ("-".into(), "-".into()),
        };
        println!(
            "{name:<10} {m:>5} {k:>5} {n:>5} {:>6} {ours:>9.1} {mm:>9.1} {np_s:>9} {ratio:>10}",
            format!("{layout:?}")
        );
    }
}
