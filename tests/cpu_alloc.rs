//! Heap allocations of the CPU executor in a warm step, counted by a global allocator.
//!
//! What a warm step may still allocate, and why:
//! - the step report (`StepReport`: the statistics records and dead-unit counts are copied
//!   into it, with a sequence model's ‖∂L/∂h_t‖, and the list of finished reports grows):
//!   up to 4 allocations, owned by the caller;
//! - on a pool of several threads, the `rayon::broadcast` a step runs in (`cpu::pool`):
//!   its list of jobs and its list of results, 2 allocations;
//! - the `gemm` crate, inside each GEMM call: its packing buffer and a flag vector or two
//!   (it has no API for caller-held workspace), counted here by replaying the step's matmul
//!   and convolution passes alone.
//!
//! Everything else — the executor, the convolutions' patch matrices and partial sums, the
//! embedding's gradient, LayerNorm's column sums, the recurrent layers' per-step vectors, the statistics' chunk records, the optimizer, the
//! loss — runs on memory sized by the first
//! step, so a warm step allocates what its GEMM calls do plus the report, and nothing
//! that grows with the size of any tensor.
//!
//! One test per file: the counter is global, and the harness runs tests in parallel.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicUsize, Ordering};

use gradscope::cpu::element::GemmThreads;
use gradscope::cpu::executor::CpuExecutor;
use gradscope::cpu::{Element, conv2d, matmul};
use gradscope::executor::{Executor, StatsLevel};
use gradscope::init::Init;
use gradscope::model::builder::Builder;
use gradscope::model::recurrent::{Readout, SeqInput, SequenceModel};
use gradscope::model::{LossKind, ModelSpec, zoo};
use gradscope::ops::{
    Activation, CellKind, MatmulLayout, MatmulShape, OptimizerKind, OptimizerParams, StepScalars,
};
use gradscope::plan::{Op, Plan, compile};
use gradscope::train::initialize;

struct Counting;

static ALLOCS: AtomicUsize = AtomicUsize::new(0);

// SAFETY: forwards to the system allocator; counting has no effect on the memory handed out.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        ALLOCS.fetch_add(1, Ordering::Relaxed);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Allocations of one warm `Element::gemm` call of this shape and these strides (row
/// strides; columns are contiguous unless `trans_a`/`trans_b` read A/B transposed).
#[allow(clippy::too_many_arguments)]
fn one_gemm_allocs(
    threads: GemmThreads,
    m: usize,
    k: usize,
    n: usize,
    trans_a: bool,
    trans_b: bool,
    beta: f32,
) -> usize {
    let (a, b, mut c) = (vec![0.5f32; m * k], vec![0.25f32; k * n], vec![0f32; m * n]);
    let [rsa, csa] = if trans_a { [1, m] } else { [k, 1] };
    let [rsb, csb] = if trans_b { [1, k] } else { [n, 1] };
    let mut run = || {
        // SAFETY: A is m·k, B is k·n, C is m·n elements, which these strides stay within.
        unsafe {
            f32::gemm(
                threads,
                m,
                k,
                n,
                1.0,
                &a,
                rsa as isize,
                csa as isize,
                &b,
                rsb as isize,
                csb as isize,
                beta,
                &mut c,
                n as isize,
                1,
            )
        }
    };
    run();
    // A parallel GEMM's count varies by one now and then (rayon's queues): the quietest of
    // five runs is what the GEMM itself needs.
    (0..5)
        .map(|_| {
            let before = ALLOCS.load(Ordering::SeqCst);
            run();
            ALLOCS.load(Ordering::SeqCst) - before
        })
        .min()
        .unwrap_or(0)
}

/// Allocations made inside the GEMM crate in one training step of `plan`, and the number of
/// GEMM calls: each GEMM the step's matmuls and convolution passes issue, replayed alone
/// (same shape, strides, threading and beta) straight through `Element::gemm`, so nothing
/// of the kernels' own code is counted here.
fn gemm_allocs(plan: &Plan) -> (usize, usize) {
    let (mut allocs, mut calls) = (0, 0);
    let mut add = |count: usize, per_call: usize| {
        calls += count;
        allocs += count * per_call;
    };
    for op in &plan.ops {
        match *op {
            Op::Matmul {
                layout,
                shape: MatmulShape { m, n, k },
                accumulate,
                ..
            } => {
                let shape = MatmulShape { m, n, k };
                let (ta, tb) = match layout {
                    MatmulLayout::NN => (false, false),
                    // f32 NT products that transpose B first run the NN GEMM.
                    MatmulLayout::NT if matmul::transposing_pays(shape) => (false, false),
                    MatmulLayout::NT => (false, true),
                    MatmulLayout::TN => (true, false),
                };
                let beta = if accumulate { 1.0 } else { 0.0 };
                add(
                    1,
                    one_gemm_allocs(GemmThreads::Parallel, m, k, n, ta, tb, beta),
                );
            }
            // The direct kernels (conv2d_direct.rs) issue no GEMM.
            Op::Conv2dForward { shape: s, .. } if conv2d::runs_direct::<f32>(&s)[0] => {}
            Op::Conv2dBackwardWeight { shape: s, .. } if conv2d::runs_direct::<f32>(&s)[1] => {}
            Op::Conv2dForward { shape: s, .. } => {
                let [oh, ow] = s.out_hw();
                let (cpg, k) = (s.cout_per_group(), s.patch_len());
                let per = one_gemm_allocs(GemmThreads::Serial, cpg, k, oh * ow, false, false, 0.0);
                add(s.n * s.groups, per);
            }
            // The direct input gradients (depthwise, stride 1 as a direct forward, strided by
            // stride phase) issue no GEMM either.
            Op::Conv2dBackwardInput { shape: s, .. }
                if conv2d::runs_input_gradient_direct::<f32>(&s) => {}
            // The forward of the transposed convolution, adding onto dx with `accumulate`.
            Op::Conv2dBackwardInput {
                shape: s,
                accumulate,
                ..
            } if conv2d::transposed(&s).is_some() => {
                let t = conv2d::transposed(&s).unwrap();
                if !conv2d::runs_direct::<f32>(&t)[0] {
                    let [oh, ow] = t.out_hw();
                    let (cpg, k) = (t.cout_per_group(), t.patch_len());
                    let beta = if accumulate { 1.0 } else { 0.0 };
                    let per =
                        one_gemm_allocs(GemmThreads::Serial, cpg, k, oh * ow, false, false, beta);
                    add(t.n * t.groups, per);
                }
            }
            Op::Conv2dBackwardInput { shape: s, .. } => {
                let [oh, ow] = s.out_hw();
                let (cpg, k) = (s.cout_per_group(), s.patch_len());
                let per = one_gemm_allocs(GemmThreads::Serial, k, cpg, oh * ow, true, false, 0.0);
                add(s.n * s.groups, per);
            }
            Op::Conv2dBackwardWeight { shape: s, .. } => {
                // The first image of each chunk of 4 writes its partial (beta 0), the
                // others add to it (beta 1); each product is col · dy_gᵀ into dW_gᵀ.
                let [oh, ow] = s.out_hw();
                let (cpg, k) = (s.cout_per_group(), s.patch_len());
                let chunks = s.n.div_ceil(4);
                for (count, beta) in [(chunks, 0.0), (s.n - chunks, 1.0)] {
                    let per =
                        one_gemm_allocs(GemmThreads::Serial, k, oh * ow, cpg, false, false, beta);
                    add(count * s.groups, per);
                }
            }
            // One per step after the first: h_{t−1}·W_hhᵀ added onto b_hh.
            Op::RecurrentForward { ref shape, .. } => {
                let per = one_gemm_allocs(
                    GemmThreads::Parallel,
                    shape.batch,
                    shape.hidden,
                    shape.gate_width(),
                    false,
                    true,
                    1.0,
                );
                add(shape.steps - 1, per);
            }
            // One per step the gradient flows back into: (next step's gates)·W_hh.
            Op::RecurrentBackward { ref shape, .. } => {
                let per = one_gemm_allocs(
                    GemmThreads::Parallel,
                    shape.batch,
                    shape.gate_width(),
                    shape.hidden,
                    false,
                    false,
                    0.0,
                );
                add(
                    (1..shape.steps).filter(|&t| shape.flows_back(t)).count(),
                    per,
                );
            }
            _ => {}
        }
    }
    (allocs, calls)
}

/// Allocations of each of steps 3..=8 (steps 1 and 2 size the scratch), at `level`.
fn warm_step_allocs(plan: Plan, level: StatsLevel) -> Vec<usize> {
    let mut exec = CpuExecutor::<f32>::new(plan.clone());
    initialize(&mut exec, 7).unwrap();
    let inputs: Vec<f32> = (0..plan.batch * plan.input_features)
        .map(|i| ((i * 7919) % 255) as f32 / 255.0 - 0.5)
        .collect();
    let labels: Vec<u32> = (0..plan.batch).map(|i| (i % plan.classes) as u32).collect();
    let mut counts = Vec::with_capacity(8);
    for step in 1..=8u64 {
        let before = ALLOCS.load(Ordering::SeqCst);
        exec.load_batch(&inputs, &labels).unwrap();
        let scalars = StepScalars {
            lr: 1e-3,
            t: step as u32,
        };
        exec.train_step(step, scalars, level).unwrap();
        let after = ALLOCS.load(Ordering::SeqCst);
        // The caller's copy of the reports is dropped outside the window.
        let reports = exec.finished(true).unwrap();
        assert_eq!(reports.len(), 1);
        assert!(reports[0].loss.is_finite(), "step {step} diverged");
        if step >= 3 {
            counts.push(after - before);
        }
    }
    counts
}

fn check(name: &str, plan: Plan) {
    let (in_gemm, calls) = gemm_allocs(&plan);
    // The report copies the records, the dead-unit counts and a sequence model's
    // ‖∂L/∂h_t‖ (a Vec each, when not empty) and goes into the list `finished` hands over (a fresh Vec after each hand-over).
    let report = usize::from(!plan.stats_jobs.is_empty())
        + usize::from(!plan.dead_unit_layers.is_empty())
        + usize::from(plan.hidden_norms.is_some())
        + 1;
    // On a pool of several threads the step is one `rayon::broadcast` (`cpu::pool`), which
    // allocates its list of jobs and its list of results.
    let broadcast = if rayon::current_num_threads() > 1 {
        2
    } else {
        0
    };
    let expected = in_gemm + report + broadcast;
    for level in [StatsLevel::None, StatsLevel::Full] {
        let counts = warm_step_allocs(plan.clone(), level);
        eprintln!(
            "{name}, {level:?}: allocations per warm step {counts:?}; expected {expected}: \
             {in_gemm} inside the GEMM crate ({calls} calls), {report} for the report and \
             {broadcast} for the pool's broadcast"
        );
        // rayon's queues take a block now and then (a step one or two above), but the
        // quietest step must be no more than the GEMM calls and the report: one allocation
        // more in any kernel or in the executor shows here. (It may be one or two fewer:
        // the GEMMs' quietest replays need not all coincide with one step's.)
        let (lo, hi) = (*counts.iter().min().unwrap(), *counts.iter().max().unwrap());
        assert!(
            lo <= expected && lo + 2 >= expected && hi <= expected + 2,
            "{name}, {level:?}: warm steps allocated {counts:?} times, expected {expected} \
             ({in_gemm} in {calls} GEMM calls, {report} for the report, {broadcast} for the \
             pool's broadcast)"
        );
    }
}

/// A two-layer LSTM of 16 units over 6 steps of 4 features.
fn lstm_spec() -> SequenceModel {
    SequenceModel {
        cell: CellKind::Lstm,
        input: SeqInput::Features(4),
        steps: 6,
        hidden: 16,
        layers: 2,
        outputs: 3,
        readout: Readout::Last,
        loss: LossKind::Xent,
        truncate: 0,
        forget_bias: Some(1.0),
    }
}

#[test]
fn warm_steps_allocate_only_the_report_and_inside_gemm() {
    let sgd = OptimizerParams::new(OptimizerKind::Adam);
    // Big enough that every parallel path runs (GEMMs above gemm's threading threshold,
    // statistics of more than two chunks, optimizer chunks), small enough for a debug build.
    let mlp = ModelSpec::mlp(
        784,
        &[256, 256],
        10,
        Activation::Relu,
        Init::HeNormal,
        LossKind::Xent,
    )
    .unwrap();
    check(
        "mlp 784-256-256-10, batch 32",
        compile(&mlp, 32, sgd).unwrap(),
    );
    let lenet = zoo::lenet5(&[1, 28, 28], 10, Init::HeNormal, LossKind::Xent).unwrap();
    check("lenet-5, batch 8", compile(&lenet, 8, sgd).unwrap());
    let resnet =
        zoo::cifar_resnet(&[3, 8, 8], 4, 8, true, true, Init::HeNormal, LossKind::Xent).unwrap();
    check("resnet (tiny), batch 4", compile(&resnet, 4, sgd).unwrap());
    let lstm = lstm_spec().build().unwrap();
    check(
        "lstm 2×16, length 6, batch 8",
        compile(&lstm, 8, sgd).unwrap(),
    );
    // Token ids through an embedding (its gradient allocated a table of sums each step).
    let tokens = SequenceModel {
        cell: CellKind::Gru,
        input: SeqInput::Tokens { vocab: 11, dim: 5 },
        ..lstm_spec()
    }
    .build()
    .unwrap();
    check("gru on tokens, batch 8", compile(&tokens, 8, sgd).unwrap());
    // Depthwise convolutions (their own kernels and scratch).
    let dwsep =
        zoo::depthwise_separable(&[1, 12, 12], 4, true, Init::HeNormal, LossKind::Xent).unwrap();
    check("dwsep, batch 4", compile(&dwsep, 4, sgd).unwrap());
    // LayerNorm (its backward's row lanes of column sums live in the executor's scratch).
    let (mut b, x) = Builder::new("layernorm mlp", &[40], Init::HeNormal);
    let h = b.linear("fc1", x, 64, 1.0);
    let h = b.layernorm("ln", h);
    let h = b.act("act", h, Activation::Gelu);
    let logits = b.linear("fc2", h, 4, 1.0);
    let ln = b.finish(logits, LossKind::Xent).unwrap();
    check("layernorm mlp, batch 16", compile(&ln, 16, sgd).unwrap());
}
