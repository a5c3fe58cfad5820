//! Limits and faults: tensors beyond a (shrunken) storage-binding limit are refused before
//! any wgpu call with an error naming the tensor, its size, the limit and what to change;
//! a device lost in mid-run gives `Error::DeviceLost`, leaves the last checkpoint intact
//! and the run resumes; a full disk or an unusable run directory stops the run with an
//! error naming the path, the previous checkpoint intact and no temporary file left.

mod common;

use std::path::Path;
use std::process::{Command, Output};
use std::sync::Arc;

use gradscope::checkpoint::{self, Checkpointer, Progress, store};
use gradscope::config::{DeviceChoice, TrainConfig};
#[cfg(unix)]
use gradscope::cpu::executor::CpuExecutor;
use gradscope::executor::{Executor, StatsLevel};
use gradscope::gpu::executor::GpuExecutor;
use gradscope::gpu::{AdapterRequest, GpuContext};
use gradscope::ops::StepScalars;
use gradscope::train::{self, Silent};
use gradscope::{Error, plan};

/// 784-16-10 with Adam: `layers.0.weight` is 16·784·4 = 50 176 bytes, the batch input
/// `batch`·784·4 bytes (100 352 at batch 32), everything else far smaller.
fn small_config(dir: &Path, device: DeviceChoice) -> TrainConfig {
    TrainConfig {
        hidden: vec![16],
        batch_size: 32,
        epochs: 1,
        max_steps: 6,
        optimizer: "adam".into(),
        lr: 1e-3,
        stats_every: 2,
        seed: 11,
        device,
        run_dir: Some(dir.to_path_buf()),
        checkpoint_every: 3,
        keep_checkpoints: 10,
        ..TrainConfig::default()
    }
}

fn small_plan(batch: usize) -> plan::Plan {
    let c = small_config(Path::new("unused"), DeviceChoice::Cpu);
    let model = c.model(784, 10).unwrap();
    plan::compile(&model, batch, c.optimizer().unwrap()).unwrap()
}

fn capped_context(cap: u64) -> Option<Arc<GpuContext>> {
    common::gpu()?;
    let request = AdapterRequest {
        max_storage_binding: Some(cap),
        ..AdapterRequest::default()
    };
    Some(Arc::new(
        GpuContext::new(&request).expect("a capped context"),
    ))
}

/// One training step on `exec` with a fixed batch; returns the loss.
fn one_step(exec: &mut dyn Executor, step: u64) -> Result<f32, Error> {
    let b = exec.plan().batch;
    let inputs = common::random_vec(step, b * 784, -1.0, 1.0);
    let labels = common::random_labels(step, b, 10);
    exec.load_batch(&inputs, &labels)?;
    exec.train_step(
        step,
        StepScalars {
            lr: 1e-3,
            t: step as u32,
        },
        StatsLevel::Full,
    )?;
    let reports = exec.finished(true)?;
    Ok(reports.last().map(|r| r.loss).unwrap_or(f32::NAN))
}

fn gradscope(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_gradscope"));
    cmd.args(args);
    for (k, v) in env {
        cmd.env(k, v);
    }
    cmd.output().expect("the binary runs")
}

// ---------------------------------------------------------------------------------------
// Limits

#[test]
fn a_tensor_over_the_storage_binding_limit_is_refused_by_name() {
    let Some(ctx) = capped_context(60_000) else {
        return;
    };
    assert_eq!(ctx.limits.max_storage_buffer_binding_size, 60_000);
    // Batch 32: the input (100 352 bytes) is over the cap, the largest weight is not.
    let err = match GpuExecutor::new(ctx.clone(), small_plan(32)) {
        Ok(_) => panic!("a plan with a 100 352-byte input was accepted under a 60 000-byte cap"),
        Err(e) => e,
    };
    match &err {
        Error::TooLarge {
            tensor,
            bytes,
            limit,
            what,
        } => {
            assert_eq!(tensor, "input");
            assert_eq!(*bytes, 32 * 784 * 4);
            assert_eq!(*limit, 60_000);
            assert_eq!(*what, "storage binding");
        }
        other => panic!("expected TooLarge, got {other:?}"),
    }
    let msg = err.to_string();
    for needle in ["`input`", "100352 bytes", "60000 bytes", "batch size"] {
        assert!(msg.contains(needle), "message lacks `{needle}`: {msg}");
    }
    // No wgpu error was raised on the way: the refusal came first.
    ctx.check("after the refusal").unwrap();

    // Batch 8 (25 088-byte input) fits under the same cap and trains.
    let mut exec = GpuExecutor::new(ctx.clone(), small_plan(8)).expect("batch 8 fits");
    train::initialize(&mut exec, 3).unwrap();
    let loss = one_step(&mut exec, 1).unwrap();
    assert!(loss.is_finite() && loss > 0.0, "loss {loss}");

    // A cap below the largest weight names the weight.
    let Some(tiny) = capped_context(40_000) else {
        return;
    };
    let err = GpuExecutor::new(tiny, small_plan(8))
        .err()
        .expect("refused");
    let msg = err.to_string();
    assert!(
        msg.contains("`layers.0.weight`") && msg.contains("50176 bytes") && msg.contains("40000"),
        "{msg}"
    );
}

#[test]
fn the_binary_refuses_an_oversized_model_and_runs_one_that_fits() {
    if common::gpu().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let dir_s = dir.display().to_string();
    let args = |batch: &'static str| {
        vec![
            "train",
            "--device",
            "gpu",
            "--hidden",
            "16",
            "--batch-size",
            batch,
            "--max-steps",
            "2",
            "--quiet",
            "--run-dir",
            dir_s.as_str(),
        ]
    };
    let env = [("GRADSCOPE_MAX_STORAGE_BINDING", "60000")];
    let out = gradscope(&args("32"), &env);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "should be refused; stderr: {err}");
    assert!(!err.contains("panicked"), "panicked: {err}");
    for needle in ["`input`", "100352 bytes", "60000 bytes", "batch size"] {
        assert!(err.contains(needle), "stderr lacks `{needle}`: {err}");
    }
    let out = gradscope(&args("8"), &env);
    assert!(
        out.status.success(),
        "batch 8 fits under the cap: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    // A malformed cap is a configuration error, not a silent default.
    let out = gradscope(&args("8"), &[("GRADSCOPE_MAX_STORAGE_BINDING", "lots")]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        !out.status.success() && err.contains("GRADSCOPE_MAX_STORAGE_BINDING"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------------
// Device loss

#[test]
fn a_lost_device_gives_device_lost_keeps_the_checkpoint_and_resumes() {
    if common::gpu().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    // Six GPU steps, checkpoints after steps 3 and 6.
    let config = small_config(&dir, DeviceChoice::Gpu);
    train::train(&config, "t", &mut Silent).unwrap();
    let ckdir = store::checkpoint_dir(&dir);
    let newest = store::list(&ckdir).unwrap()[0].1.clone();
    let before = std::fs::read(&newest).unwrap();

    // A fresh context continues from the checkpoint, then loses its device.
    let ctx = Arc::new(GpuContext::new(&AdapterRequest::default()).unwrap());
    let mut exec = GpuExecutor::new(ctx.clone(), small_plan(32)).unwrap();
    let (progress, _) = checkpoint::resume(&mut exec, &dir).unwrap();
    assert_eq!(progress.step, 6);
    one_step(&mut exec, 7).expect("a step before the loss");
    ctx.simulate_device_loss();
    assert!(ctx.is_lost());
    let step = one_step(&mut exec, 8);
    assert!(
        matches!(step, Err(Error::DeviceLost { .. })),
        "a step on a lost device: {step:?}"
    );
    let msg = step.unwrap_err().to_string();
    assert!(
        msg.contains("device was lost") && msg.contains("checkpoint"),
        "{msg}"
    );
    // Every later use says the same, never a panic.
    let p = exec.plan().params[0].value;
    assert!(matches!(exec.read(p), Err(Error::DeviceLost { .. })));
    assert!(matches!(exec.finished(true), Err(Error::DeviceLost { .. })));
    // Saving a checkpoint from the lost device fails and leaves the old one alone.
    let checkpointer = Checkpointer::new(&dir, 1, 10).unwrap();
    let progress = Progress {
        step: 8,
        ..Progress::start()
    };
    let saved = checkpointer.save(&mut exec, &config, &progress);
    assert!(
        matches!(saved, Err(Error::DeviceLost { .. })),
        "a checkpoint of a lost device: {saved:?}"
    );
    drop(exec);
    assert_eq!(
        std::fs::read(&newest).unwrap(),
        before,
        "checkpoint changed"
    );
    let steps: Vec<u64> = store::list(&ckdir).unwrap().iter().map(|s| s.0).collect();
    assert_eq!(steps, vec![6, 3]);

    // Resume completes on a fresh GPU context and on the CPU.
    let mut config = checkpoint::load_run_config(&dir).unwrap();
    config.max_steps = 9;
    let summary = train::resume(&config, &dir, &mut Silent).unwrap();
    assert_eq!(summary.steps, 9);
    config.device = DeviceChoice::Cpu;
    config.max_steps = 12;
    let summary = train::resume(&config, &dir, &mut Silent).unwrap();
    assert_eq!(summary.steps, 12);
}

// ---------------------------------------------------------------------------------------
// Disk full and unusable run directories

#[test]
fn a_run_directory_that_cannot_be_created_is_named() {
    let tmp = tempfile::tempdir().unwrap();
    // Tests run as root here, where permission bits do not stop writes: a path through a
    // regular file fails for every user.
    let file = tmp.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    let dir = file.join("run");
    let err = train::train(&small_config(&dir, DeviceChoice::Cpu), "t", &mut Silent)
        .expect_err("a run under a regular file");
    match &err {
        Error::Io { path, .. } => assert!(path.starts_with(&file), "{path:?}"),
        other => panic!("expected Io, got {other:?}"),
    }
    assert!(err.to_string().contains("a-file"), "{err}");

    let out = gradscope(
        &[
            "train",
            "--device",
            "cpu",
            "--hidden",
            "16",
            "--max-steps",
            "2",
            "--quiet",
            "--run-dir",
            &dir.display().to_string(),
        ],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains(&dir.display().to_string()), "{stderr}");
}

fn temporaries(dir: &Path) -> Vec<String> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with(checkpoint::atomic::TEMP_PREFIX))
        .collect()
}

/// A checkpoint write that runs out of space midway: the temporary file the atomic writer
/// opens is planted as a link to /dev/full, so its write fails with ENOSPC exactly as a
/// full disk does. The error names the file and says so, the previous checkpoint still
/// loads unchanged, and nothing temporary is left behind. (Unix only: /dev/full and
/// symbolic links as a plain user.)
#[cfg(unix)]
#[test]
fn a_full_disk_during_a_checkpoint_keeps_the_previous_one() {
    if !Path::new("/dev/full").exists() {
        eprintln!("skipping: no /dev/full");
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let config = small_config(&dir, DeviceChoice::Cpu);
    let mut exec = CpuExecutor::<f32>::new(small_plan(8));
    train::initialize(&mut exec, 3).unwrap();
    let checkpointer = Checkpointer::new(&dir, 3, 10).unwrap();
    let at = |step| Progress {
        step,
        ..Progress::start()
    };
    for step in 1..=3 {
        one_step(&mut exec, step).unwrap();
    }
    let first = checkpointer.save(&mut exec, &config, &at(3)).unwrap();
    let before = std::fs::read(&first).unwrap();
    for step in 4..=6 {
        one_step(&mut exec, step).unwrap();
    }
    let temp = checkpointer.dir().join(format!(
        "{}{}-{}",
        checkpoint::atomic::TEMP_PREFIX,
        std::process::id(),
        store::file_name(6)
    ));
    std::os::unix::fs::symlink("/dev/full", &temp).unwrap();
    let err = checkpointer
        .save(&mut exec, &config, &at(6))
        .expect_err("a write to a full disk");
    match &err {
        Error::Io { path, source } => {
            assert_eq!(path, &temp);
            assert_eq!(source.raw_os_error(), Some(28), "ENOSPC: {source}");
        }
        other => panic!("expected Io, got {other:?}"),
    }
    assert!(err.to_string().contains("step-000006"), "{err}");
    assert!(
        Path::new("/dev/full").exists(),
        "the link, not /dev/full, goes"
    );
    assert!(
        temporaries(checkpointer.dir()).is_empty(),
        "temporary left: {:?}",
        temporaries(checkpointer.dir())
    );
    let steps: Vec<u64> = store::list(checkpointer.dir())
        .unwrap()
        .iter()
        .map(|s| s.0)
        .collect();
    assert_eq!(steps, vec![3]);
    assert_eq!(std::fs::read(&first).unwrap(), before);
    let (file, skipped) = checkpoint::newest(&dir).unwrap();
    assert!(skipped.is_empty());
    assert_eq!(file.metadata["step"], "3");
    let mut fresh = CpuExecutor::<f32>::new(small_plan(8));
    checkpoint::restore(&mut fresh, &file).unwrap();
}

/// A checkpoint whose rename is refused (the destination is a directory in the way): the
/// run stops with an error naming the path, the binary exits non-zero, and the previous
/// checkpoint is intact.
#[test]
fn a_failed_rename_stops_the_binary_and_keeps_the_previous_checkpoint() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let dir_s = dir.display().to_string();
    let run = |steps: &str, extra: &[&str]| {
        let mut args = vec![
            "train",
            "--device",
            "cpu",
            "--hidden",
            "16",
            "--batch-size",
            "32",
            "--max-steps",
            steps,
            "--checkpoint-every",
            "3",
            "--quiet",
        ];
        args.extend_from_slice(extra);
        gradscope(&args, &[])
    };
    let out = run("3", &["--run-dir", &dir_s]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let ckdir = store::checkpoint_dir(&dir);
    let first = ckdir.join(store::file_name(3));
    let before = std::fs::read(&first).unwrap();
    let blocker = ckdir.join(store::file_name(6));
    std::fs::create_dir_all(blocker.join("in-the-way")).unwrap();
    let out = gradscope(
        &["train", "--resume", &dir_s, "--max-steps", "9", "--quiet"],
        &[],
    );
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{stderr}");
    assert!(!stderr.contains("panicked"), "{stderr}");
    assert!(stderr.contains("step-000006.safetensors"), "{stderr}");
    assert_eq!(std::fs::read(&first).unwrap(), before);
    assert!(temporaries(&ckdir).is_empty(), "{:?}", temporaries(&ckdir));
}
