//! The recurrent kernels (every cell's time loop forward and backward, the hidden-gradient
//! norms, the last-step selection) and the embedding lookup and scatter-add: GPU against
//! the CPU twins on awkward sizes: one step and a prime number of steps, hidden sizes that
//! are not multiples of 4 and past one workgroup (64), batch 1 and primes.

mod common;

use common::{assert_close, random_vec};
use gradscope::cpu;
use gradscope::gpu::kernels::{embedding, recurrent};
use gradscope::ops::{CellKind, RecurrentShape};

const CELLS: [CellKind; 4] = [
    CellKind::RnnTanh,
    CellKind::RnnRelu,
    CellKind::Lstm,
    CellKind::Gru,
];

/// (batch, steps, input, hidden, truncate)
const SHAPES: &[(usize, usize, usize, usize, usize)] = &[
    (1, 1, 1, 1, 0),
    (3, 1, 4, 5, 0),
    (2, 7, 3, 7, 0),
    (5, 7, 2, 13, 3),
    (9, 2, 3, 6, 0),
    (1, 3, 5, 67, 0),
    (3, 11, 2, 65, 4),
];

#[test]
fn recurrent_time_loop_gpu_matches_cpu() {
    let Some(ctx) = common::gpu() else { return };
    for (si, &(batch, steps, input, hidden, truncate)) in SHAPES.iter().enumerate() {
        for cell in CELLS {
            let s = RecurrentShape {
                cell,
                batch,
                steps,
                input,
                hidden,
                truncate,
            };
            let what = format!("{} shape {s:?}", cell.name());
            let seed = 1000 * si as u64 + cell.code() as u64;
            let (rows, gh) = (s.rows(), s.gate_width());
            let aux_len = (rows * cell.aux_width(hidden)).max(1);
            // Scaled like PyTorch's init so the products stay in the cells' working range.
            let k = 1.0 / (hidden as f32).sqrt();
            let w_hh = random_vec(seed, gh * hidden, -k, k);
            let b_hh = random_vec(seed + 1, gh, -k, k);
            let gates0 = random_vec(seed + 2, rows * gh, -1.5, 1.5);
            let dy = random_vec(seed + 3, rows * hidden, -1.0, 1.0);

            let mut gates = gates0.clone();
            let mut h = vec![0.0f32; rows * hidden];
            let mut hprev = vec![0.0f32; rows * hidden];
            let mut aux = vec![0.0f32; aux_len];
            // Scratch left over from a larger shape must not leak into this one.
            let mut scratch = cpu::aligned::AlignedBuf::from_slice(&vec![f32::NAN; 4 * rows * gh]);
            cpu::recurrent::recurrent_forward(
                &s,
                &w_hh,
                &b_hh,
                &mut gates,
                &mut h,
                &mut hprev,
                &mut aux,
                &mut scratch,
            );
            let mut dh = vec![0.0f32; rows * hidden];
            let mut dgi = vec![0.0f32; rows * gh];
            let mut dgh = vec![0.0f32; rows * gh];
            let gru = cell == CellKind::Gru;
            cpu::recurrent::recurrent_backward(
                &s,
                &w_hh,
                &gates,
                &h,
                &hprev,
                &aux,
                &dy,
                &mut dh,
                &mut dgi,
                gru.then_some(&mut dgh[..]),
                &mut scratch,
            );
            let norms = cpu::recurrent::hidden_grad_norms(&dh, batch, steps, hidden);

            let bw = ctx.upload("w_hh", &w_hh).unwrap();
            let bwt = ctx.upload("w_hh_t", &vec![0.0f32; gh * hidden]).unwrap();
            let bb = ctx.upload("b_hh", &b_hh).unwrap();
            let bg = ctx.upload("gates", &gates0).unwrap();
            let bh = ctx.upload("h", &vec![0.0f32; rows * hidden]).unwrap();
            let bhp = ctx.upload("hprev", &vec![1.0f32; rows * hidden]).unwrap();
            let bax = ctx.upload("aux", &vec![0.0f32; aux_len]).unwrap();
            let bdy = ctx.upload("dy", &dy).unwrap();
            let bdh = ctx.upload("dh", &vec![0.0f32; rows * hidden]).unwrap();
            let bdgi = ctx.upload("dgi", &vec![0.0f32; rows * gh]).unwrap();
            let bdgh = ctx.upload("dgh", &vec![0.0f32; rows * gh]).unwrap();
            let bc = ctx.upload("carry", &vec![0.0f32; batch * hidden]).unwrap();
            let bn = ctx.upload("norms", &vec![0.0f32; steps + 2]).unwrap();
            let mut ds =
                recurrent::recurrent_forward(ctx, &s, &bw, &bwt, &bb, &bg, &bh, &bhp, &bax)
                    .unwrap();
            ds.extend(
                recurrent::recurrent_backward(
                    ctx,
                    &s,
                    &bw,
                    &bg,
                    &bhp,
                    &bax,
                    &bdy,
                    &bdh,
                    &bdgi,
                    gru.then_some(&bdgh),
                    &bc,
                )
                .unwrap(),
            );
            ds.push(recurrent::hidden_grad_norms(ctx, &bdh, batch, steps, hidden, &bn, 2).unwrap());
            ctx.run(&ds.iter().collect::<Vec<_>>()).unwrap();

            // f32 on both sides; the sums run in another order (GEMM vs in-order) and the
            // device's exp/tanh differ by a few ulp, compounded over the steps.
            let tol = |label: &str, got: Vec<f32>, want: &[f32]| {
                assert_close(&format!("{label} {what}"), &got, want, 1e-5, 1e-4)
            };
            tol("h", ctx.read(&bh, rows * hidden).unwrap(), &h);
            tol("gates", ctx.read(&bg, rows * gh).unwrap(), &gates);
            tol("hprev", ctx.read(&bhp, rows * hidden).unwrap(), &hprev);
            if cell.aux_width(hidden) > 0 {
                tol("aux", ctx.read(&bax, aux_len).unwrap(), &aux);
            }
            tol("dh", ctx.read(&bdh, rows * hidden).unwrap(), &dh);
            tol("dgi", ctx.read(&bdgi, rows * gh).unwrap(), &dgi);
            if gru {
                tol("dgh", ctx.read(&bdgh, rows * gh).unwrap(), &dgh);
            }
            let got_norms = ctx.read(&bn, steps + 2).unwrap();
            tol("norms", got_norms[2..].to_vec(), &norms);
            assert_eq!(
                got_norms[..2],
                [0.0, 0.0],
                "norms written outside their offset"
            );
        }
    }
}

#[test]
fn last_step_gpu_matches_cpu() {
    let Some(ctx) = common::gpu() else { return };
    for &(batch, steps, f) in &[(1, 1, 1), (3, 7, 5), (2, 1, 300), (7, 13, 3)] {
        let x = random_vec(5, batch * steps * f, -1.0, 1.0);
        let dy = random_vec(6, batch * f, -1.0, 1.0);
        let mut y = vec![0.0f32; batch * f];
        let mut dx = vec![9.0f32; batch * steps * f];
        cpu::recurrent::last_step_forward(&x, &mut y, batch, steps, f);
        cpu::recurrent::last_step_backward(&dy, &mut dx, batch, steps, f);
        let bx = ctx.upload("x", &x).unwrap();
        let by = ctx.upload("y", &vec![0.0f32; batch * f]).unwrap();
        let bdy = ctx.upload("dy", &dy).unwrap();
        let bdx = ctx.upload("dx", &vec![9.0f32; batch * steps * f]).unwrap();
        let a = recurrent::last_step_forward(ctx, &bx, &by, batch, steps, f).unwrap();
        let b = recurrent::last_step_backward(ctx, &bdy, &bdx, batch, steps, f).unwrap();
        ctx.run(&[&a, &b]).unwrap();
        let what = format!("B {batch} T {steps} F {f}");
        // Copies: exact.
        assert_close(
            &format!("last_step_forward {what}"),
            &ctx.read(&by, batch * f).unwrap(),
            &y,
            0.0,
            0.0,
        );
        assert_close(
            &format!("last_step_backward {what}"),
            &ctx.read(&bdx, batch * steps * f).unwrap(),
            &dx,
            0.0,
            0.0,
        );
    }
}

#[test]
fn embedding_gpu_matches_cpu_bit_for_bit() {
    let Some(ctx) = common::gpu() else { return };
    for &(rows, vocab, dim) in &[(1, 1, 1), (7, 3, 5), (61, 11, 13), (300, 2, 3)] {
        for accumulate in [false, true] {
            // Ids with repeats, plus ids that select no row: negative, past the table, 1.5.
            let mut ids: Vec<f32> = common::random_labels(rows as u64, rows, vocab as u32)
                .iter()
                .map(|&v| v as f32)
                .collect();
            for (i, bad) in [-1.0f32, vocab as f32, 1.5].into_iter().enumerate() {
                if i * 3 < rows {
                    ids[i * 3] = bad;
                }
            }
            let w = random_vec(8, vocab * dim, -1.0, 1.0);
            let dy = random_vec(9, rows * dim, -1.0, 1.0);
            let dw0 = random_vec(10, vocab * dim, -1.0, 1.0);
            let mut y = vec![0.0f32; rows * dim];
            let mut dw = dw0.clone();
            cpu::embedding::embedding_forward(&ids, &w, &mut y, rows, vocab, dim);
            cpu::embedding::embedding_backward(&ids, &dy, &mut dw, rows, vocab, dim, accumulate);
            let bids = ctx.upload("ids", &ids).unwrap();
            let bw = ctx.upload("w", &w).unwrap();
            let by = ctx.upload("y", &vec![7.0f32; rows * dim]).unwrap();
            let bdy = ctx.upload("dy", &dy).unwrap();
            let bdw = ctx.upload("dw", &dw0).unwrap();
            let a = embedding::embedding_forward(ctx, &bids, &bw, &by, rows, vocab, dim).unwrap();
            let b =
                embedding::embedding_backward(ctx, &bids, &bdy, &bdw, rows, vocab, dim, accumulate)
                    .unwrap();
            ctx.run(&[&a, &b]).unwrap();
            let what = format!("rows {rows} vocab {vocab} dim {dim} accumulate {accumulate}");
            // Copies, and sums in the same row order on both sides: exact.
            assert_close(
                &format!("embedding_forward {what}"),
                &ctx.read(&by, rows * dim).unwrap(),
                &y,
                0.0,
                0.0,
            );
            assert_close(
                &format!("embedding_backward {what}"),
                &ctx.read(&bdw, vocab * dim).unwrap(),
                &dw,
                0.0,
                0.0,
            );
        }
    }
}

#[test]
fn embedding_backward_against_finite_differences() {
    // L = Σ c ⊙ embedding(ids) is linear in the table, so dL/dW is exactly Σ rows of c
    // picked by id; central differences in f64 confirm the scatter-add.
    let (rows, vocab, dim) = (9, 4, 3);
    let ids: Vec<f64> = [0.0, 3.0, 3.0, 1.0, 0.0, 3.0, 2.0, 7.0, 0.0].to_vec();
    let c = common::random_vec_f64(3, rows * dim, -1.0, 1.0);
    let w = common::random_vec_f64(4, vocab * dim, -1.0, 1.0);
    let loss = |w: &[f64]| {
        let mut y = vec![0.0; rows * dim];
        cpu::embedding::embedding_forward(&ids, w, &mut y, rows, vocab, dim);
        y.iter().zip(&c).map(|(a, b)| a * b).sum::<f64>()
    };
    let mut dw = vec![0.0; vocab * dim];
    cpu::embedding::embedding_backward(&ids, &c, &mut dw, rows, vocab, dim, false);
    let eps = 1e-6;
    let numeric: Vec<f64> = (0..w.len())
        .map(|i| {
            let (mut up, mut down) = (w.clone(), w.clone());
            up[i] += eps;
            down[i] -= eps;
            (loss(&up) - loss(&down)) / (2.0 * eps)
        })
        .collect();
    common::assert_close_f64("embedding_backward", &dw, &numeric, 1e-9, 1e-7);
}

#[test]
fn a_batch_past_the_grid_limit_is_an_error_not_a_panic() {
    let Some(ctx) = common::gpu() else { return };
    // Groups of 4 samples lie along the grid's y dimension: more groups than the device
    // allows per dimension (65 535 on most) must be refused when the dispatches are built.
    let batch = ctx.limits.max_compute_workgroups_per_dimension as usize
        * recurrent::SAMPLES_PER_INVOCATION
        + 1;
    let s = RecurrentShape {
        cell: CellKind::Lstm,
        batch,
        steps: 1,
        input: 1,
        hidden: 1,
        truncate: 0,
    };
    let (rows, gh) = (s.rows(), s.gate_width());
    let buf = |n: usize| ctx.storage_buffer("t", (n * 4) as u64).unwrap();
    let (w, wt, b, g) = (buf(gh), buf(gh), buf(gh), buf(rows * gh));
    let (h, hp, ax) = (buf(rows), buf(rows), buf(rows));
    let err = recurrent::recurrent_forward(ctx, &s, &w, &wt, &b, &g, &h, &hp, &ax).unwrap_err();
    let msg = err.to_string();
    assert!(msg.contains("workgroup"), "{msg}");
}
