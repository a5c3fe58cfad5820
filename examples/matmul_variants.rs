//! Every matmul variant (shaders/matmul.wgsl and the tiles of shaders/matmul_tiled.wgsl)
//! and the convolution passes, timed on the chosen adapter, after checking each against the
//! CPU twin: what the autotune chooses between, laid out for a person.
//!
//! 1. Correctness: every variant, every layout, on awkward small shapes, against
//!    `cpu::matmul` (and the conv passes at batch 2 against `cpu::conv2d`). A mismatch
//!    stops the run before any timing is printed.
//! 2. Matmul: for each size S in --sizes and each layout, C(S,S) = op(A)·op(B) with K = S,
//!    every variant the shape allows: median time after warm-up, GFLOP/s (2·S³ per
//!    product), the fastest marked, and what the autotune heuristic would pick.
//! 3. Convolution on resnet-20's shapes at --batch (default 128): forward, backward-input
//!    and backward-weight passes (split-K reduction included), GFLOP/s of every variant
//!    (shaders/conv2d.wgsl and the tiles of shaders/conv2d_tiled.wgsl), the fastest and the
//!    heuristic's pick marked.
//!
//! GPU times come from timestamp queries around one compute pass when the adapter has
//! TIMESTAMP_QUERY (device time only), else from the host clock around submit and wait;
//! the output says which.
//!
//! `cargo run --release --example matmul_variants -- [--sizes 256,1024,4096]
//!  [--layout nn|nt|tn|all] [--batch 128] [--runs 5] [--no-conv] [--adapter NAME]`

use gradscope::bench::conv2d::resnet20_shapes;
use gradscope::cpu::conv2d as cpu_conv;
use gradscope::cpu::matmul::matmul as cpu_matmul;
use gradscope::gpu::kernels::conv2d::{self as gpu_conv, ConvPass, ConvVariant};
use gradscope::gpu::kernels::matmul::{Epilogue, MatmulVariant, matmul_with};
use gradscope::gpu::{AdapterRequest, Dispatch, GpuContext, autotune, timing};
use gradscope::ops::{Conv2dShape, MatmulLayout, MatmulShape};

struct Args {
    sizes: Vec<usize>,
    layouts: Vec<MatmulLayout>,
    batch: usize,
    runs: usize,
    conv: bool,
    adapter: Option<String>,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        sizes: vec![256, 1024, 4096],
        layouts: vec![MatmulLayout::NN, MatmulLayout::NT, MatmulLayout::TN],
        batch: 128,
        runs: 5,
        conv: true,
        adapter: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut value = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--sizes" => {
                a.sizes = value()?
                    .split(',')
                    .map(|s| s.trim().parse().map_err(|_| format!("bad size `{s}`")))
                    .collect::<Result<_, _>>()?
            }
            "--layout" => {
                a.layouts = match value()?.as_str() {
                    "nn" => vec![MatmulLayout::NN],
                    "nt" => vec![MatmulLayout::NT],
                    "tn" => vec![MatmulLayout::TN],
                    "all" => vec![MatmulLayout::NN, MatmulLayout::NT, MatmulLayout::TN],
                    other => return Err(format!("--layout {other}: use nn, nt, tn or all")),
                }
            }
            "--batch" => a.batch = value()?.parse().map_err(|_| "bad --batch")?,
            "--runs" => a.runs = value()?.parse().map_err(|_| "bad --runs")?,
            "--no-conv" => a.conv = false,
            "--adapter" => a.adapter = Some(value()?),
            other => return Err(format!("unknown argument `{other}`")),
        }
    }
    Ok(a)
}

/// Deterministic values in [-0.5, 0.5).
fn data(len: usize, salt: usize) -> Vec<f32> {
    (0..len)
        .map(|i| ((i.wrapping_mul(7919).wrapping_add(salt * 104_729)) % 1021) as f32 / 1021.0 - 0.5)
        .collect()
}

/// Largest |got − want| / (1 + |want|).
fn max_rel_err(got: &[f32], want: &[f32]) -> f32 {
    got.iter()
        .zip(want)
        .map(|(g, w)| (g - w).abs() / (1.0 + w.abs()))
        .fold(
            0.0,
            |m, e| if e.is_nan() { f32::INFINITY } else { m.max(e) },
        )
}

fn check_matmul(ctx: &GpuContext) -> Result<(), String> {
    let mut checked = 0;
    for (m, n, k) in [(67, 45, 33), (132, 136, 44), (1, 7, 13), (129, 64, 256)] {
        let s = MatmulShape { m, n, k };
        for layout in [MatmulLayout::NN, MatmulLayout::NT, MatmulLayout::TN] {
            let a = data(m * k, 1);
            let b = data(k * n, 2);
            let mut want = vec![0.0f32; m * n];
            cpu_matmul(layout, s, &a, &b, &mut want, false).map_err(|e| e.to_string())?;
            let ga = ctx.upload("a", &a).map_err(|e| e.to_string())?;
            let gb = ctx.upload("b", &b).map_err(|e| e.to_string())?;
            for v in MatmulVariant::candidates(layout, s) {
                let gc = ctx
                    .storage_buffer("c", (m * n * 4) as u64)
                    .map_err(|e| e.to_string())?;
                let d = matmul_with(ctx, v, layout, s, &ga, &gb, &gc, false, Epilogue::default())
                    .map_err(|e| e.to_string())?;
                ctx.run(&[&d]).map_err(|e| e.to_string())?;
                let got: Vec<f32> = ctx.read(&gc, m * n).map_err(|e| e.to_string())?;
                let err = max_rel_err(&got, &want);
                // K ≤ 256 products of values ≤ 0.5: f32 rounding stays below 1e-5.
                if err > 1e-4 {
                    return Err(format!(
                        "{} {layout:?} {s:?}: max relative error {err:e} against the CPU",
                        v.name()
                    ));
                }
                checked += 1;
            }
        }
    }
    println!("correctness: {checked} (variant, layout, shape) cases match the CPU twin");
    Ok(())
}

/// op(A)[i, k] and op(B)[k, j] of square S×S operands stored as `layout` says.
fn op_entry(
    layout: MatmulLayout,
    a: &[f32],
    b: &[f32],
    s: usize,
    i: usize,
    j: usize,
    k: usize,
) -> f64 {
    let av = match layout {
        MatmulLayout::TN => a[k * s + i],
        _ => a[i * s + k],
    };
    let bv = match layout {
        MatmulLayout::NT => b[j * s + k],
        _ => b[k * s + j],
    };
    av as f64 * bv as f64
}

/// Largest error of 64 sampled entries of C against f64 dot products, relative to the sum
/// of |products| (the scale of f32 rounding in a K-term sum).
fn sampled_error(layout: MatmulLayout, a: &[f32], b: &[f32], c: &[f32], s: usize) -> f64 {
    let mut worst = 0.0f64;
    for t in 0..64usize {
        let i = (t * 7919 + 13) % s;
        let j = (t * 104_729 + 7) % s;
        let (mut sum, mut mag) = (0.0f64, 0.0f64);
        for k in 0..s {
            let p = op_entry(layout, a, b, s, i, j, k);
            sum += p;
            mag += p.abs();
        }
        let err = (c[i * s + j] as f64 - sum).abs() / mag.max(1e-30);
        worst = worst.max(if err.is_nan() { f64::INFINITY } else { err });
    }
    worst
}

fn bench_matmul(ctx: &GpuContext, args: &Args) -> Result<(), String> {
    for &size in &args.sizes {
        let s = MatmulShape {
            m: size,
            n: size,
            k: size,
        };
        let bytes = (size * size * 4) as u64;
        let (ha, hb) = (data(size * size, 3), data(size * size, 4));
        let ga = ctx.storage_buffer("a", bytes).map_err(|e| e.to_string())?;
        let gb = ctx.storage_buffer("b", bytes).map_err(|e| e.to_string())?;
        let gc = ctx.storage_buffer("c", bytes).map_err(|e| e.to_string())?;
        ctx.write(&ga, bytemuck::cast_slice(&ha));
        ctx.write(&gb, bytemuck::cast_slice(&hb));
        for &layout in &args.layouts {
            println!(
                "\nmatmul {} {size}×{size}×{size} ({:.1} GFLOP per product; heuristic: {}); check: 64 sampled entries against f64 on the CPU (error relative to Σ|products|), and bits against the simple kernel",
                format!("{layout:?}").to_lowercase(),
                s.flops() / 1e9,
                autotune::heuristic(layout, s).name()
            );
            let mut rows = Vec::new();
            let mut simple_bits: Option<Vec<u32>> = None;
            for v in MatmulVariant::candidates(layout, s) {
                let d = matmul_with(ctx, v, layout, s, &ga, &gb, &gc, false, Epilogue::default())
                    .map_err(|e| e.to_string())?;
                // Passes of about 20 ms, so a 4096³ product (ms) is timed a few at a time.
                let t = timing::median_time(ctx, &[&d], 2, args.runs, 20e-3)
                    .map_err(|e| e.to_string())?;
                // A cross-check of the clock: one run, host time around submit and wait.
                let start = std::time::Instant::now();
                ctx.run(&[&d]).map_err(|e| e.to_string())?;
                let host = start.elapsed().as_secs_f64();
                // The product the timed passes computed, checked.
                let c: Vec<f32> = ctx.read(&gc, size * size).map_err(|e| e.to_string())?;
                let err = sampled_error(layout, &ha, &hb, &c, size);
                let bits: Vec<u32> = c.iter().map(|x| x.to_bits()).collect();
                let same = match &simple_bits {
                    None => {
                        simple_bits = Some(bits);
                        "ref"
                    }
                    Some(r) if *r == bits => "same",
                    Some(_) => "DIFFERENT",
                };
                if err > 1e-4 {
                    return Err(format!(
                        "{} {layout:?} {size}: sampled relative error {err:e} against the CPU",
                        v.name()
                    ));
                }
                rows.push((v.name(), t, host, err, same));
            }
            let best = rows.iter().map(|r| r.1).fold(f64::INFINITY, f64::min);
            for (name, t, host, err, same) in rows {
                println!(
                    "  {name:<15} {:>10.3} ms {:>10.1} GFLOP/s  (host {:>8.3} ms)  err {err:.1e} bits {same:<9}{}",
                    t * 1e3,
                    s.flops() / t / 1e9,
                    host * 1e3,
                    if t == best { "  ← fastest" } else { "" }
                );
            }
        }
    }
    Ok(())
}

/// Buffers of one convolution's tensors, filled with deterministic values.
struct ConvBuffers {
    x: wgpu::Buffer,
    w: wgpu::Buffer,
    dy: wgpu::Buffer,
    y: wgpu::Buffer,
    dx: wgpu::Buffer,
    dw: wgpu::Buffer,
}

fn conv_buffers(ctx: &GpuContext, s: &Conv2dShape) -> Result<ConvBuffers, String> {
    let e = |e: gradscope::Error| e.to_string();
    Ok(ConvBuffers {
        x: ctx.upload("x", &data(s.x_len(), 5)).map_err(e)?,
        w: ctx.upload("w", &data(s.w_len(), 6)).map_err(e)?,
        dy: ctx.upload("dy", &data(s.y_len(), 7)).map_err(e)?,
        y: ctx.storage_buffer("y", (s.y_len() * 4) as u64).map_err(e)?,
        dx: ctx
            .storage_buffer("dx", (s.x_len() * 4) as u64)
            .map_err(e)?,
        dw: ctx
            .storage_buffer("dw", (s.w_len() * 4) as u64)
            .map_err(e)?,
    })
}

/// The dispatches of one pass with one variant.
fn conv_pass(
    ctx: &GpuContext,
    pass: ConvPass,
    v: ConvVariant,
    s: &Conv2dShape,
    b: &ConvBuffers,
) -> Result<Vec<Dispatch>, String> {
    let r = match pass {
        ConvPass::Forward => {
            gpu_conv::conv2d_forward_with(ctx, v, s, &b.x, &b.w, &b.y).map(|d| vec![d])
        }
        ConvPass::BackwardInput => {
            gpu_conv::conv2d_backward_input_with(ctx, v, s, &b.dy, &b.w, &b.dx, false)
                .map(|d| vec![d])
        }
        ConvPass::BackwardWeight => {
            gpu_conv::conv2d_backward_weight_with(ctx, v, s, &b.x, &b.dy, &b.dw, false)
        }
    };
    r.map_err(|e| e.to_string())
}

fn check_conv(ctx: &GpuContext) -> Result<(), String> {
    let mut checked = 0;
    for (name, s) in resnet20_shapes(2) {
        let b = conv_buffers(ctx, &s)?;
        let (x, w, dy) = (data(s.x_len(), 5), data(s.w_len(), 6), data(s.y_len(), 7));
        let mut y = vec![0.0f32; s.y_len()];
        let mut dx = vec![0.0f32; s.x_len()];
        let mut dw = vec![0.0f32; s.w_len()];
        cpu_conv::conv2d_forward(&s, &x, &w, &mut y);
        cpu_conv::conv2d_backward_input(&s, &dy, &w, &mut dx);
        cpu_conv::conv2d_backward_weight(&s, &x, &dy, &mut dw, false);
        for v in ConvVariant::candidates(ctx) {
            for (pass, (buf, want)) in
                ConvPass::ALL
                    .into_iter()
                    .zip([(&b.y, &y), (&b.dx, &dx), (&b.dw, &dw)])
            {
                let ds = conv_pass(ctx, pass, v, &s, &b)?;
                ctx.run(&ds.iter().collect::<Vec<_>>())
                    .map_err(|e| e.to_string())?;
                let got: Vec<f32> = ctx.read(buf, want.len()).map_err(|e| e.to_string())?;
                let err = max_rel_err(&got, want);
                if err > 1e-4 {
                    return Err(format!(
                        "conv {name} {} {}: max relative error {err:e}",
                        pass.name(),
                        v.name()
                    ));
                }
                checked += 1;
            }
        }
    }
    println!(
        "correctness: {checked} (variant, pass, resnet-20 shape at batch 2) cases match the CPU twin"
    );
    Ok(())
}

fn bench_conv(ctx: &GpuContext, args: &Args) -> Result<(), String> {
    let variants = ConvVariant::candidates(ctx);
    println!(
        "\nconvolution, resnet-20 shapes at batch {}: GFLOP/s per variant (Conv2dShape::flops, the same count for each pass; * = fastest, h = heuristic's pick)",
        args.batch
    );
    print!("  {:<18} {:<16}", "shape", "pass");
    for v in &variants {
        print!(" {:>11}", v.name());
    }
    println!("  {:>9}", "best ms");
    for (name, s) in resnet20_shapes(args.batch) {
        let b = conv_buffers(ctx, &s)?;
        for pass in ConvPass::ALL {
            let mut times = Vec::new();
            for &v in &variants {
                let ds = conv_pass(ctx, pass, v, &s, &b)?;
                let refs: Vec<&Dispatch> = ds.iter().collect();
                times.push(
                    timing::median_time(ctx, &refs, 2, args.runs, 20e-3)
                        .map_err(|e| e.to_string())?,
                );
            }
            let best = times.iter().copied().fold(f64::INFINITY, f64::min);
            let pick = gpu_conv::conv_heuristic(pass, &s);
            print!("  {name:<18} {:<16}", pass.name());
            for (v, t) in variants.iter().zip(&times) {
                let mark = match (*t == best, *v == pick) {
                    (true, true) => "*h",
                    (true, false) => "*",
                    (false, true) => "h",
                    _ => "",
                };
                print!(" {:>9.1}{mark:<2}", s.flops() / t / 1e9);
            }
            println!("  {:>9.3}", best * 1e3);
        }
    }
    Ok(())
}

fn main() {
    if let Err(e) = run() {
        eprintln!("error: {e}");
        std::process::exit(1);
    }
}

fn run() -> Result<(), String> {
    let args = parse_args()?;
    let ctx = GpuContext::new(&AdapterRequest {
        adapter: args.adapter.clone(),
        ..Default::default()
    })
    .map_err(|e| e.to_string())?;
    println!("adapter: {}", ctx.adapter.describe());
    println!("timing: {}", timing::clock(&ctx).describe());
    check_matmul(&ctx)?;
    if args.conv {
        check_conv(&ctx)?;
    }
    bench_matmul(&ctx, &args)?;
    if args.conv {
        bench_conv(&ctx, &args)?;
    }
    Ok(())
}
