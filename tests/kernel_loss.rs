//! Losses: GPU against the CPU twin (softmax cross-entropy, MSE, the batch reduction) on
//! awkward shapes and on logits of ±1000; the CPU gradients against central differences of
//! Σ row_loss in f64.

mod common;

use common::{assert_close, assert_close_f64, random_labels, random_vec, random_vec_f64};
use gradscope::cpu;
use gradscope::gpu::kernels::loss;

/// (rows, classes): size 1, primes, a typical 10-class batch, and a 1000×37 batch.
const SHAPES: &[(usize, usize)] = &[
    (1, 1),
    (1, 7),
    (7, 2),
    (13, 10),
    (31, 3),
    (127, 13),
    (1000, 37),
];

struct XentOut {
    dlogits: Vec<f32>,
    row_loss: Vec<f32>,
    row_correct: Vec<u32>,
}

fn xent_cpu(logits: &[f32], labels: &[u32], rows: usize, classes: usize) -> XentOut {
    let mut o = XentOut {
        dlogits: vec![0.0; rows * classes],
        row_loss: vec![0.0; rows],
        row_correct: vec![0; rows],
    };
    cpu::loss::softmax_xent_forward_backward(
        logits,
        labels,
        &mut o.dlogits,
        &mut o.row_loss,
        &mut o.row_correct,
        rows,
        classes,
    );
    o
}

fn xent_gpu(logits: &[f32], labels: &[u32], rows: usize, classes: usize) -> Option<XentOut> {
    let ctx = common::gpu()?;
    let lb = ctx.upload("logits", logits).unwrap();
    let lab = ctx.upload("labels", labels).unwrap();
    let db = ctx
        .storage_buffer("dlogits", 4 * (rows * classes) as u64)
        .unwrap();
    let rl = ctx.storage_buffer("row_loss", 4 * rows as u64).unwrap();
    let rc = ctx.storage_buffer("row_correct", 4 * rows as u64).unwrap();
    let d =
        loss::softmax_xent_forward_backward(ctx, &lb, &lab, &db, &rl, &rc, rows, classes).unwrap();
    ctx.run(&[&d]).unwrap();
    Some(XentOut {
        dlogits: ctx.read(&db, rows * classes).unwrap(),
        row_loss: ctx.read(&rl, rows).unwrap(),
        row_correct: ctx.read(&rc, rows).unwrap(),
    })
}

/// GPU against CPU. exp and log on the GPU are a few ulp (Vulkan allows exp 3 + 2|x| ulp,
/// log 3 ulp); lavapipe differs from the twin by about 1 ulp. 1e−5 relative (~80 ulp) with
/// a 1e−7 floor for near-zero softmax entries still fails any wrong formula by orders.
fn compare_xent(what: &str, logits: &[f32], labels: &[u32], rows: usize, classes: usize) {
    let want = xent_cpu(logits, labels, rows, classes);
    let Some(got) = xent_gpu(logits, labels, rows, classes) else {
        return;
    };
    assert_close(
        &format!("{what} row_loss"),
        &got.row_loss,
        &want.row_loss,
        1e-7,
        1e-5,
    );
    assert_close(
        &format!("{what} dlogits"),
        &got.dlogits,
        &want.dlogits,
        1e-7,
        1e-5,
    );
    assert_eq!(got.row_correct, want.row_correct, "{what} row_correct");
}

#[test]
fn softmax_xent_gpu_matches_cpu() {
    for (i, &(rows, classes)) in SHAPES.iter().enumerate() {
        let seed = 40 + i as u64;
        let logits = random_vec(seed, rows * classes, -5.0, 5.0);
        let labels = random_labels(seed + 1, rows, classes as u32);
        compare_xent(
            &format!("softmax_xent seed {seed} shape {rows}x{classes}"),
            &logits,
            &labels,
            rows,
            classes,
        );
    }
}

/// Logits of ±1000 would overflow e^x at 89; the row max keeps everything finite.
#[test]
fn softmax_xent_large_logits_are_finite_and_correct() {
    // Row 0: label on the max → loss ≈ 0. Row 1: label 2000 below the max → loss 2000.
    // Row 2: a tie at the max: first maximum wins the arg-max, loss log 2 for either.
    let logits = vec![
        1000.0f32, 0.0, -1000.0, //
        1000.0, 0.0, -1000.0, //
        -1000.0, 1000.0, 1000.0,
    ];
    let labels = vec![0u32, 2, 2];
    let rows = 3;
    let cpu_out = xent_cpu(&logits, &labels, rows, 3);
    let n = rows as f32;
    assert_close(
        "large logits CPU row_loss",
        &cpu_out.row_loss,
        &[0.0, 2000.0 / n, std::f32::consts::LN_2 / n],
        1e-6,
        1e-6,
    );
    assert_eq!(cpu_out.row_correct, vec![1, 0, 0]);
    assert!(cpu_out.dlogits.iter().all(|v| v.is_finite()));
    let Some(gpu_out) = xent_gpu(&logits, &labels, rows, 3) else {
        return;
    };
    assert!(
        gpu_out.row_loss.iter().all(|v| v.is_finite()),
        "{:?}",
        gpu_out.row_loss
    );
    assert!(
        gpu_out.dlogits.iter().all(|v| v.is_finite()),
        "{:?}",
        gpu_out.dlogits
    );
    compare_xent("large logits", &logits, &labels, rows, 3);

    let rows = 31;
    let logits = random_vec(77, rows * 11, -1000.0, 1000.0);
    let labels = random_labels(78, rows, 11);
    compare_xent(
        "random logits in ±1000 seed 77 shape 31x11",
        &logits,
        &labels,
        rows,
        11,
    );
}

/// An out-of-range label is never used as an index: NaN loss, zero gradient, counted wrong.
#[test]
fn softmax_xent_out_of_range_label() {
    let logits = vec![1.0f32, 2.0, 3.0, 3.0, 2.0, 1.0];
    let labels = vec![7u32, 0];
    let want = xent_cpu(&logits, &labels, 2, 3);
    assert!(want.row_loss[0].is_nan() && want.row_loss[1].is_finite());
    assert_eq!(&want.dlogits[..3], &[0.0, 0.0, 0.0]);
    assert_eq!(want.row_correct, vec![0, 1]);
    let Some(got) = xent_gpu(&logits, &labels, 2, 3) else {
        return;
    };
    assert!(got.row_loss[0].is_nan(), "GPU row_loss {:?}", got.row_loss);
    compare_xent("out-of-range label", &logits, &labels, 2, 3);
}

#[test]
fn mse_gpu_matches_cpu() {
    let Some(ctx) = common::gpu() else { return };
    for (i, &(rows, cols)) in SHAPES.iter().enumerate() {
        let seed = 60 + i as u64;
        let what = format!("mse seed {seed} shape {rows}x{cols}");
        let pred = random_vec(seed, rows * cols, -3.0, 3.0);
        let targets = random_vec(seed + 1, rows * cols, -1.0, 1.0);
        // One label past the range on purpose: it must simply count as wrong.
        let mut labels = random_labels(seed + 2, rows, cols as u32);
        labels[0] = cols as u32 + 5;
        let mut dpred = vec![0.0f32; rows * cols];
        let mut row_loss = vec![0.0f32; rows];
        let mut row_correct = vec![0u32; rows];
        cpu::loss::mse_forward_backward(
            &pred,
            &targets,
            &labels,
            &mut dpred,
            &mut row_loss,
            &mut row_correct,
            rows,
            cols,
        );
        assert_eq!(
            row_correct[0], 0,
            "{what}: out-of-range label counted right"
        );

        let pb = ctx.upload("pred", &pred).unwrap();
        let tb = ctx.upload("targets", &targets).unwrap();
        let lb = ctx.upload("labels", &labels).unwrap();
        let db = ctx
            .storage_buffer("dpred", 4 * (rows * cols) as u64)
            .unwrap();
        let rl = ctx.storage_buffer("row_loss", 4 * rows as u64).unwrap();
        let rc = ctx.storage_buffer("row_correct", 4 * rows as u64).unwrap();
        let d = loss::mse_forward_backward(ctx, &pb, &tb, &lb, &db, &rl, &rc, rows, cols).unwrap();
        ctx.run(&[&d]).unwrap();
        let got_d: Vec<f32> = ctx.read(&db, rows * cols).unwrap();
        let got_l: Vec<f32> = ctx.read(&rl, rows).unwrap();
        let got_c: Vec<u32> = ctx.read(&rc, rows).unwrap();
        // Only + − × ÷ in the same order on both sides: equal up to a driver's freedom to
        // fuse a multiply-add (1 ulp of each partial sum).
        assert_close(&format!("{what} dpred"), &got_d, &dpred, 0.0, 1e-6);
        assert_close(&format!("{what} row_loss"), &got_l, &row_loss, 0.0, 1e-5);
        assert_eq!(got_c, row_correct, "{what} row_correct");
    }
}

#[test]
fn loss_reduce_gpu_matches_cpu() {
    let Some(ctx) = common::gpu() else { return };
    for (i, &rows) in [1usize, 7, 255, 256, 257, 1000, 3001].iter().enumerate() {
        let seed = 80 + i as u64;
        let row_loss = random_vec(seed, rows, 0.0, 1.0);
        let row_correct = random_labels(seed + 1, rows, 2);
        let (want_loss, want_correct) = cpu::loss::loss_reduce(&row_loss, &row_correct);
        let lb = ctx.upload("row_loss", &row_loss).unwrap();
        let cb = ctx.upload("row_correct", &row_correct).unwrap();
        let out = ctx.storage_buffer("out", 8).unwrap();
        let d = loss::loss_reduce(ctx, &lb, &cb, &out, rows).unwrap();
        ctx.run(&[&d]).unwrap();
        let got: Vec<f32> = ctx.read(&out, 2).unwrap();
        // The CPU twin adds in the kernel's order, so the sums agree exactly.
        assert_eq!(
            got,
            vec![want_loss, want_correct as f32],
            "loss_reduce seed {seed} rows {rows}"
        );
        let plain: f64 = row_loss.iter().map(|&v| v as f64).sum();
        assert!(
            (want_loss as f64 - plain).abs() <= 1e-6 * plain,
            "loss_reduce seed {seed} rows {rows}: {want_loss} vs f64 sum {plain}"
        );
    }
}

#[test]
fn loss_reduce_cpu_hand_case() {
    let (l, c) = cpu::loss::loss_reduce(&[0.5f64, 0.25, 1.0], &[1, 0, 1]);
    assert_eq!((l, c), (1.75, 2));
    let (l, c) = cpu::loss::loss_reduce::<f32>(&[], &[]);
    assert_eq!((l, c), (0.0, 0));
}

#[test]
fn loss_launchers_refuse_bad_shapes() {
    let Some(ctx) = common::gpu() else { return };
    let b = |n: u64| ctx.storage_buffer("b", 4 * n).unwrap();
    let (logits, labels, dl, rl, rc) = (b(12), b(4), b(12), b(4), b(3));
    let e = loss::softmax_xent_forward_backward(ctx, &logits, &labels, &dl, &rl, &rc, 4, 3)
        .unwrap_err();
    assert!(e.to_string().contains("`row_correct`"), "{e}");
    let e = loss::softmax_xent_forward_backward(ctx, &logits, &labels, &dl, &rl, &rc, 3, 0)
        .unwrap_err();
    assert!(e.to_string().contains("classes"), "{e}");
    let e = loss::loss_reduce(ctx, &rl, &rc, &b(1), 3).unwrap_err();
    assert!(e.to_string().contains("`out`"), "{e}");
}

/// Central differences in f64 of L = Σ row_loss with respect to each logit, against the
/// fused dlogits. eps = 1e−6 on a smooth O(1) function: truncation ~1e−13, rounding
/// ~1e−16/1e−6 = 1e−10, so 1e−8 absolute and 1e−6 relative catch any real error.
#[test]
fn softmax_xent_dlogits_match_central_differences() {
    for (i, &(rows, classes)) in [(1usize, 1usize), (1, 4), (3, 5), (7, 3)]
        .iter()
        .enumerate()
    {
        let seed = 90 + i as u64;
        let logits = random_vec_f64(seed, rows * classes, -3.0, 3.0);
        let labels = random_labels(seed + 1, rows, classes as u32);
        let total = |l: &[f64]| {
            let mut d = vec![0.0; rows * classes];
            let mut rl = vec![0.0; rows];
            let mut rc = vec![0; rows];
            cpu::loss::softmax_xent_forward_backward(
                l, &labels, &mut d, &mut rl, &mut rc, rows, classes,
            );
            (rl.iter().sum::<f64>(), d)
        };
        let (_, analytic) = total(&logits);
        let eps = 1e-6;
        let numeric: Vec<f64> = (0..rows * classes)
            .map(|j| {
                let mut p = logits.clone();
                p[j] += eps;
                let mut m = logits.clone();
                m[j] -= eps;
                (total(&p).0 - total(&m).0) / (2.0 * eps)
            })
            .collect();
        assert_close_f64(
            &format!(
                "softmax_xent dlogits vs central differences seed {seed} shape {rows}x{classes}"
            ),
            &analytic,
            &numeric,
            1e-8,
            1e-6,
        );
    }
}

/// As above for MSE with respect to pred.
#[test]
fn mse_dpred_matches_central_differences() {
    for (i, &(rows, cols)) in [(1usize, 1usize), (3, 5), (7, 2)].iter().enumerate() {
        let seed = 95 + i as u64;
        let pred = random_vec_f64(seed, rows * cols, -3.0, 3.0);
        let targets = random_vec_f64(seed + 1, rows * cols, -1.0, 1.0);
        let labels = random_labels(seed + 2, rows, cols as u32);
        let total = |p: &[f64]| {
            let mut d = vec![0.0; rows * cols];
            let mut rl = vec![0.0; rows];
            let mut rc = vec![0; rows];
            cpu::loss::mse_forward_backward(
                p, &targets, &labels, &mut d, &mut rl, &mut rc, rows, cols,
            );
            (rl.iter().sum::<f64>(), d)
        };
        let (_, analytic) = total(&pred);
        let eps = 1e-6;
        let numeric: Vec<f64> = (0..rows * cols)
            .map(|j| {
                let mut p = pred.clone();
                p[j] += eps;
                let mut m = pred.clone();
                m[j] -= eps;
                (total(&p).0 - total(&m).0) / (2.0 * eps)
            })
            .collect();
        assert_close_f64(
            &format!("mse dpred vs central differences seed {seed} shape {rows}x{cols}"),
            &analytic,
            &numeric,
            1e-8,
            1e-6,
        );
    }
}

/// Ties at the row maximum within one group of four classes and across groups (the device
/// reads the classes four at a time): the first maximum wins the arg-max on both sides.
#[test]
fn softmax_xent_ties_keep_the_first_maximum() {
    let (rows, classes) = (2, 9);
    let mut logits = vec![0.5f32; rows * classes];
    // Row 0: classes 2 and 3 tie (one group of four); label 3 is not the arg-max.
    logits[2] = 3.0;
    logits[3] = 3.0;
    // Row 1: classes 4 and 7 tie (two groups); label 4 is the arg-max.
    logits[classes + 4] = 3.0;
    logits[classes + 7] = 3.0;
    let labels = vec![3u32, 4];
    let want = xent_cpu(&logits, &labels, rows, classes);
    assert_eq!(want.row_correct, vec![0, 1]);
    let Some(got) = xent_gpu(&logits, &labels, rows, classes) else {
        return;
    };
    assert_eq!(got.row_correct, want.row_correct, "arg-max with ties");
    assert_close("ties row_loss", &got.row_loss, &want.row_loss, 1e-6, 1e-6);
    assert_close("ties dlogits", &got.dlogits, &want.dlogits, 1e-6, 1e-6);
}
