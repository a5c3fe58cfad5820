//! Shortcut add and gradient accumulation: GPU against the CPU twin on awkward lengths,
//! and a hand-checked case.

mod common;

use common::{assert_close, random_vec};
use gradscope::cpu::add as ca;
use gradscope::gpu::kernels::add as ga;

/// 1, primes, not multiples of the workgroup (256), several workgroups.
const LENS: &[usize] = &[1, 7, 13, 127, 257, 1000, 70_001];

#[test]
fn add_forward_gpu_matches_cpu() {
    let Some(ctx) = common::gpu() else { return };
    for (i, &len) in LENS.iter().enumerate() {
        let seed = 600 + i as u64;
        let a = random_vec(seed, len, -3.0, 3.0);
        let b = random_vec(seed + 1000, len, -3.0, 3.0);
        let mut want = vec![0.0f32; len];
        ca::add_forward(&a, &b, &mut want, None);
        let ab = ctx.upload("a", &a).unwrap();
        let bb = ctx.upload("b", &b).unwrap();
        let yb = ctx.upload("y", &vec![9.0f32; len]).unwrap();
        ctx.run(&[&ga::add_forward(ctx, &ab, &bb, &yb, len, None).unwrap()])
            .unwrap();
        // One f32 addition on both sides: exact.
        assert_close(
            &format!("add seed {seed} len {len}"),
            &ctx.read(&yb, len).unwrap(),
            &want,
            0.0,
            0.0,
        );
    }
}

#[test]
fn accumulate_grad_gpu_matches_cpu() {
    let Some(ctx) = common::gpu() else { return };
    for (i, &len) in LENS.iter().enumerate() {
        let seed = 700 + i as u64;
        let src = random_vec(seed, len, -3.0, 3.0);
        let dst0 = random_vec(seed + 1000, len, -3.0, 3.0);
        let mut want = dst0.clone();
        ca::accumulate_grad(&src, &mut want);
        ca::accumulate_grad(&src, &mut want);
        let sb = ctx.upload("src", &src).unwrap();
        let db = ctx.upload("dst", &dst0).unwrap();
        let d = ga::accumulate_grad(ctx, &sb, &db, len).unwrap();
        // Twice: the dispatch accumulates, it does not overwrite.
        ctx.run(&[&d, &d]).unwrap();
        assert_close(
            &format!("accumulate seed {seed} len {len}"),
            &ctx.read(&db, len).unwrap(),
            &want,
            0.0,
            0.0,
        );
    }
}

#[test]
fn hand_checked_and_refusals() {
    let mut y = [0.0f64; 3];
    ca::add_forward(&[1.0, 2.0, 3.0], &[10.0, 20.0, 30.0], &mut y, None);
    assert_eq!(y, [11.0, 22.0, 33.0]);
    let mut d = [1.0f64, 1.0];
    ca::accumulate_grad(&[0.5, -2.0], &mut d);
    assert_eq!(d, [1.5, -1.0]);

    let Some(ctx) = common::gpu() else { return };
    let a = ctx.upload("a", &[1.0f32; 4]).unwrap();
    let y = ctx.upload("y", &[0.0f32; 4]).unwrap();
    // y = a + a is allowed (both read-only); in place or short buffers are not.
    ctx.run(&[&ga::add_forward(ctx, &a, &a, &y, 4, None).unwrap()])
        .unwrap();
    assert_eq!(ctx.read::<f32>(&y, 4).unwrap(), vec![2.0; 4]);
    assert!(ga::add_forward(ctx, &a, &y, &y, 4, None).is_err());
    assert!(ga::add_forward(ctx, &a, &a, &y, 5, None).is_err());
    assert!(ga::accumulate_grad(ctx, &a, &a, 4).is_err());
}

#[test]
fn copy_tensor_gpu_matches_cpu() {
    let Some(ctx) = common::gpu() else { return };
    for (i, &len) in LENS.iter().enumerate() {
        let seed = 900 + i as u64;
        let src = random_vec(seed, len, -3.0, 3.0);
        // dst starts with other values: the copy overwrites every element.
        let dst0 = random_vec(seed + 1000, len, -3.0, 3.0);
        let mut want = dst0.clone();
        ca::copy_tensor(&src, &mut want);
        assert_eq!(want, src);
        let sb = ctx.upload("src", &src).unwrap();
        let db = ctx.upload("dst", &dst0).unwrap();
        let d = ga::copy_tensor(ctx, &sb, &db, len).unwrap();
        ctx.run(&[&d]).unwrap();
        assert_close(
            &format!("copy seed {seed} len {len}"),
            &ctx.read(&db, len).unwrap(),
            &want,
            0.0,
            0.0,
        );
    }
    let a = ctx.upload("a", &[1.0f32; 4]).unwrap();
    assert!(ga::copy_tensor(ctx, &a, &a, 4).is_err());
}

/// The Add with the following activation fused (a residual block's merge and its ReLU):
/// the same y as the plain Add and the bits of the activation kernel applied to y.
#[test]
fn fused_activation_gives_the_bits_of_the_two_kernels() {
    use gradscope::gpu::kernels::activation::activation_forward;
    use gradscope::ops::Activation;
    let Some(ctx) = common::gpu() else { return };
    let bits = |v: Vec<f32>| v.into_iter().map(f32::to_bits).collect::<Vec<_>>();
    for (k, act) in [
        Activation::Relu,
        Activation::Gelu,
        Activation::Elu { alpha: 0.5 },
        Activation::Tanh,
    ]
    .into_iter()
    .enumerate()
    {
        for len in [1usize, 255, 257, 70_000] {
            let seed = 40 + k as u64 * 100 + len as u64;
            let a = ctx
                .upload("a", &common::random_vec(seed, len, -2.0, 2.0))
                .unwrap();
            let b = ctx
                .upload("b", &common::random_vec(seed + 1, len, -2.0, 2.0))
                .unwrap();
            let buf = |n: &str| ctx.storage_buffer(n, 4 * len as u64).unwrap();
            let (y1, z1, y2, z2) = (buf("y1"), buf("z1"), buf("y2"), buf("z2"));
            let plain = [
                ga::add_forward(ctx, &a, &b, &y1, len, None).unwrap(),
                activation_forward(ctx, act, &y1, &z1, len).unwrap(),
            ];
            let fused = ga::add_forward(ctx, &a, &b, &y2, len, Some((act, &z2))).unwrap();
            ctx.run(&[&plain[0], &plain[1], &fused]).unwrap();
            let what = format!("{} len {len}", act.name());
            assert_eq!(
                bits(ctx.read(&y1, len).unwrap()),
                bits(ctx.read(&y2, len).unwrap()),
                "{what}: y"
            );
            assert_eq!(
                bits(ctx.read(&z1, len).unwrap()),
                bits(ctx.read(&z2, len).unwrap()),
                "{what}: z"
            );
            // z may not be an input or y.
            assert!(ga::add_forward(ctx, &a, &b, &y2, len, Some((act, &a))).is_err());
            assert!(ga::add_forward(ctx, &a, &b, &y2, len, Some((act, &y2))).is_err());
        }
    }
}

/// The CPU twin's fused Add: the plain Add's y and `activation_forward` of it, bit for bit,
/// for every activation, on one chunk and on several split across threads.
#[test]
fn cpu_fused_activation_gives_the_bits_of_the_two_ops() {
    use gradscope::cpu::activation::activation_forward;
    use gradscope::ops::Activation;
    for name in Activation::ALL_NAMES {
        let act = Activation::parse(name).unwrap();
        for len in [1usize, 257, 70_001] {
            let a = random_vec(len as u64, len, -2.0, 2.0);
            let b = random_vec(len as u64 + 1, len, -2.0, 2.0);
            let (mut y1, mut z1) = (vec![0f32; len], vec![0f32; len]);
            ca::add_forward(&a, &b, &mut y1, None);
            activation_forward(act, &y1, &mut z1);
            let (mut y2, mut z2) = (vec![0f32; len], vec![f32::NAN; len]);
            let fused = gradscope::cpu::activation::FusedActivation {
                act,
                z: &mut z2,
                write_y: true,
            };
            ca::add_forward(&a, &b, &mut y2, Some(fused));
            let bits = |v: &[f32]| v.iter().map(|x| x.to_bits()).collect::<Vec<_>>();
            assert_eq!(bits(&y1), bits(&y2), "{name} len {len}: y");
            assert_eq!(bits(&z1), bits(&z2), "{name} len {len}: z");
        }
    }
}
