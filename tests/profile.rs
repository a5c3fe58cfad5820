//! `gradscope train --profile` on a tiny run, CPU and GPU: profile.json has every kind of
//! op, every layer, finite non-negative times that add up, and the run's results are those
//! of the same run without profiling, bit for bit.

mod common;

use std::path::Path;
use std::process::Command;

use gradscope::config::{DeviceChoice, TrainConfig};
use gradscope::train::{Silent, train};
use serde_json::Value;

fn run(dir: &Path, device: DeviceChoice, profile: bool, model: &str) {
    let config = TrainConfig {
        model: model.into(),
        depth: 2,
        width: 16,
        batch_size: 8,
        max_steps: 4,
        epochs: 1,
        // Full statistics on odd steps, gradient records only on even ones: both kinds of
        // step are profiled.
        stats_every: 2,
        device,
        tensorboard: false,
        run_dir: Some(dir.to_path_buf()),
        profile,
        ..TrainConfig::default()
    };
    train(&config, "profile-test", &mut Silent).unwrap();
}

/// The loss, accuracy and gradient norm of every step (what profiling must not change).
fn step_lines(dir: &Path) -> Vec<(f64, f64, f64)> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<Value>(l).unwrap())
        .filter(|v| v["kind"] == "step")
        .map(|v| {
            (
                v["loss"].as_f64().unwrap(),
                v["accuracy"].as_f64().unwrap(),
                v["grad_norm"].as_f64().unwrap(),
            )
        })
        .collect()
}

fn check_profile(dir: &Path, layers: &[&str]) -> Value {
    let p: Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("profile.json")).unwrap()).unwrap();
    assert_eq!(p["steps_run"], 4);
    assert_eq!(p["steps_counted"], 3, "the first step is left out");
    assert!(!p["method"].as_str().unwrap().is_empty());
    let kinds: Vec<&str> = p["by_kind"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    for k in ["forward", "loss", "backward", "statistics", "optimizer"] {
        assert!(kinds.contains(&k), "kind {k} missing from {kinds:?}");
    }
    let by_layer: Vec<&str> = p["by_layer"]
        .as_array()
        .unwrap()
        .iter()
        .map(|l| l["name"].as_str().unwrap())
        .collect();
    for l in layers {
        assert!(by_layer.contains(l), "layer {l} missing from {by_layer:?}");
    }
    let ops = p["ops"].as_array().unwrap();
    assert!(!ops.is_empty());
    let mut sum = 0.0;
    for o in ops {
        let s = o["seconds"].as_f64().unwrap();
        assert!(s.is_finite() && s >= 0.0, "{o}");
        assert!(o["runs"].as_u64().unwrap() >= 1);
        sum += s;
    }
    let total = p["op_seconds"].as_f64().unwrap();
    assert!(total > 0.0 && (sum - total).abs() <= 1e-9 + 1e-9 * total);
    let fractions: f64 = p["by_kind"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| k["fraction"].as_f64().unwrap())
        .sum();
    assert!(
        (fractions - 1.0).abs() < 1e-9,
        "kind fractions sum to {fractions}"
    );
    assert!(p["step_seconds"].as_f64().unwrap() > 0.0);
    // By kernel: every op counted once, slowest first, the matmuls without their shapes.
    let by_kernel = p["by_kernel"].as_array().unwrap();
    let names: Vec<&str> = by_kernel
        .iter()
        .map(|k| k["name"].as_str().unwrap())
        .collect();
    for k in [
        "matmul NN",
        "matmul NT",
        "matmul TN",
        "stats",
        "optimizer update",
    ] {
        assert!(names.contains(&k), "kernel {k} missing from {names:?}");
    }
    let counted: u64 = by_kernel.iter().map(|k| k["ops"].as_u64().unwrap()).sum();
    assert_eq!(counted as usize, ops.len());
    let seconds: Vec<f64> = by_kernel
        .iter()
        .map(|k| k["seconds"].as_f64().unwrap())
        .collect();
    assert!(seconds.windows(2).all(|w| w[0] >= w[1]), "{seconds:?}");
    let kernel_sum: f64 = seconds.iter().sum();
    assert!((kernel_sum - total).abs() <= 1e-9 + 1e-9 * total);
    p
}

#[test]
fn cpu_profile_has_every_kind_and_layer_and_changes_nothing() {
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run(a.path(), DeviceChoice::Cpu, true, "mlp");
    run(b.path(), DeviceChoice::Cpu, false, "mlp");
    let p = check_profile(a.path(), &["hidden1", "hidden2", "output"]);
    assert!(p["executor"].as_str().unwrap().starts_with("cpu"));
    assert!(p["host_encode_seconds"].is_null());
    assert_eq!(step_lines(a.path()), step_lines(b.path()));
    assert!(!b.path().join("profile.json").exists());
}

#[test]
fn gpu_profile_has_every_kind_and_layer_and_changes_nothing() {
    if common::gpu().is_none() {
        return;
    }
    let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    run(a.path(), DeviceChoice::Gpu, true, "mlp");
    run(b.path(), DeviceChoice::Gpu, false, "mlp");
    let p = check_profile(a.path(), &["hidden1", "hidden2", "output"]);
    assert!(p["executor"].as_str().unwrap().starts_with("gpu"));
    // The host's time to encode and submit a step is measured on the GPU executor.
    assert!(p["host_encode_seconds"].as_f64().unwrap() > 0.0);
    assert!(p["host_submit_seconds"].as_f64().unwrap() >= 0.0);
    // The statistics finalize (no plan op) is profiled too.
    assert!(
        p["ops"]
            .as_array()
            .unwrap()
            .iter()
            .any(|o| o["label"].as_str().unwrap().starts_with("stats finalize"))
    );
    assert_eq!(step_lines(a.path()), step_lines(b.path()));
    // Dispatches: the step's total is the ops' sum plus the full-statistics finalize, and
    // the ops a fused or grouped dispatch computes record none (the MLP's biases and
    // activations go into the products' epilogues; its statistics are grouped).
    let ops = p["ops"].as_array().unwrap();
    let per_op: Vec<u64> = ops
        .iter()
        .filter(|o| !o["label"].as_str().unwrap().starts_with("stats finalize"))
        .map(|o| {
            o["dispatches"]
                .as_u64()
                .expect("a GPU profile counts dispatches")
        })
        .collect();
    let total = p["dispatches_per_step"].as_u64().unwrap();
    assert_eq!(
        total,
        per_op.iter().sum::<u64>() + 1,
        "{total} vs {per_op:?}"
    );
    assert!(
        per_op.iter().filter(|&&d| d == 0).count() >= 4,
        "{per_op:?}"
    );
    // The table by kernel counts each op's dispatches once.
    let of_ops: u64 = ops.iter().map(|o| o["dispatches"].as_u64().unwrap()).sum();
    let of_kernels: u64 = p["by_kernel"]
        .as_array()
        .unwrap()
        .iter()
        .map(|k| {
            k["dispatches"]
                .as_u64()
                .expect("a GPU profile counts dispatches")
        })
        .sum();
    assert_eq!(of_kernels, of_ops);
}

#[test]
fn gpu_profile_of_a_convolutional_net_names_its_layers() {
    if common::gpu().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    run(tmp.path(), DeviceChoice::Gpu, true, "lenet5");
    check_profile(tmp.path(), &["conv1", "conv2", "fc1"]);
}

#[test]
fn the_cli_prints_the_profile() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let out = Command::new(env!("CARGO_BIN_EXE_gradscope"))
        .args([
            "train",
            "--depth",
            "2",
            "--width",
            "16",
            "--max-steps",
            "3",
            "--batch-size",
            "8",
            "--device",
            "cpu",
            "--profile",
            "--quiet",
            "--run-dir",
            dir.to_str().unwrap(),
        ])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    for needle in [
        "profile: cpu",
        "ms/step",
        "forward",
        "backward",
        "optimizer",
        "kernel                              ops",
        "matmul NT",
        "slowest ops",
    ] {
        assert!(err.contains(needle), "stderr lacks `{needle}`:\n{err}");
    }
    assert!(dir.join("profile.json").exists());
    // A mode of the run, not a setting: config.toml does not carry it.
    let config = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(!config.contains("profile"), "{config}");
}

/// Every GPU timing method the device offers leaves every loss and parameter bit for bit
/// as an unprofiled executor computes them, on steps with full, gradient-only and no
/// statistics.
#[test]
fn every_gpu_profiling_method_changes_nothing() {
    use gradscope::executor::{Executor, StatsLevel};
    use gradscope::gpu::executor::GpuExecutor;
    use gradscope::gpu::timer::GpuTiming;
    use gradscope::init::Init;
    use gradscope::model::{LossKind, zoo};
    use gradscope::ops::{OptimizerKind, OptimizerParams, StepScalars};
    use gradscope::train::initialize;

    let Some(ctx) = common::gpu_arc() else { return };
    let model = zoo::lenet5(&[1, 28, 28], 10, Init::HeNormal, LossKind::Xent).unwrap();
    let plan =
        gradscope::plan::compile(&model, 4, OptimizerParams::new(OptimizerKind::Adam)).unwrap();
    let inputs = common::random_vec(3, 4 * 784, 0.0, 1.0);
    let labels = common::random_labels(4, 4, 10);
    let run = |method: Option<GpuTiming>| {
        let mut exec = GpuExecutor::new(ctx.clone(), plan.clone()).unwrap();
        initialize(&mut exec, 1).unwrap();
        exec.load_batch(&inputs, &labels).unwrap();
        if let Some(m) = method {
            exec.start_profiling_with(m).unwrap();
        }
        let levels = [StatsLevel::Full, StatsLevel::Gradients, StatsLevel::None];
        for (t, level) in levels.into_iter().enumerate() {
            let t = t as u64 + 1;
            exec.train_step(
                t,
                StepScalars {
                    lr: 1e-3,
                    t: t as u32,
                },
                level,
            )
            .unwrap();
        }
        let losses: Vec<u32> = exec
            .finished(true)
            .unwrap()
            .iter()
            .map(|r| r.loss.to_bits())
            .collect();
        assert_eq!(losses.len(), 3);
        let params: Vec<Vec<f32>> = plan
            .params
            .iter()
            .map(|p| exec.read(p.value).unwrap())
            .collect();
        let profile = exec.take_profile();
        (losses, params, profile)
    };
    let (losses, params, none) = run(None);
    assert!(none.is_none());
    let mut methods = vec![GpuTiming::HostClock];
    if ctx.features.contains(wgpu::Features::TIMESTAMP_QUERY) {
        methods.push(GpuTiming::TimestampsPerPass);
    }
    if ctx
        .features
        .contains(wgpu::Features::TIMESTAMP_QUERY_INSIDE_PASSES)
    {
        methods.push(GpuTiming::TimestampsInsidePass);
    }
    for m in methods {
        let (l, p, profile) = run(Some(m));
        assert_eq!(l, losses, "{m:?}: losses");
        assert!(p == params, "{m:?}: parameters differ");
        let profile = profile.unwrap();
        assert_eq!(profile.method, m.describe());
        assert_eq!((profile.steps_run, profile.steps_counted), (3, 2));
        assert!(profile.op_seconds > 0.0, "{m:?}");
    }
}
