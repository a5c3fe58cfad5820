//! Checkpoints: atomic writes and keep-K, bit-exact resume (CPU and GPU executors), every
//! kind of corrupt or mismatched file, weights-only loading and export, and the binary
//! killed with SIGKILL mid-run then resumed.

mod common;

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

use gradscope::checkpoint::{self, Checkpointer, StoredTensor, format, store};
use gradscope::config::{DeviceChoice, Schedule, TrainConfig};
use gradscope::cpu::executor::CpuExecutor;
use gradscope::executor::Executor;
use gradscope::train::{self, Silent};
use gradscope::{Error, plan};

/// A small, fast run: 784-16-12-10, batch 1000 (9 batches per epoch of the 9000 training
/// records), so 20 steps cross two epoch ends; Adam with warm-up and a cosine schedule, so
/// that a resumed run must get both the step index and the total right.
fn small_config(dir: &Path, device: DeviceChoice) -> TrainConfig {
    TrainConfig {
        hidden: vec![16, 12],
        batch_size: 1000,
        epochs: 5,
        max_steps: 20,
        optimizer: "adam".into(),
        schedule: Schedule::Cosine,
        warmup_steps: 3,
        lr: 3e-3,
        stats_every: 3,
        seed: 7,
        device,
        run_dir: Some(dir.to_path_buf()),
        keep_checkpoints: 100,
        ..TrainConfig::default()
    }
}

fn final_checkpoint(dir: &Path) -> format::TensorFile {
    let (file, skipped) = checkpoint::newest(dir).expect("a final checkpoint");
    assert!(
        skipped.is_empty(),
        "unexpected unreadable checkpoints: {skipped:?}"
    );
    file
}

fn metrics(dir: &Path) -> String {
    std::fs::read_to_string(dir.join("metrics.jsonl")).expect("metrics.jsonl")
}

/// Parameters and optimizer state must be identical to the bit, and so must the log.
fn assert_same_run(what: &str, a: &Path, b: &Path) {
    let (fa, fb) = (final_checkpoint(a), final_checkpoint(b));
    assert_eq!(
        fa.metadata.get("step"),
        fb.metadata.get("step"),
        "{what}: step"
    );
    assert_eq!(
        fa.metadata.get("progress"),
        fb.metadata.get("progress"),
        "{what}: progress"
    );
    assert_eq!(fa.tensors.len(), fb.tensors.len(), "{what}: tensor count");
    for (ta, tb) in fa.tensors.iter().zip(&fb.tensors) {
        assert_eq!(ta.name, tb.name, "{what}: tensor order");
        assert!(
            ta.bytes == tb.bytes,
            "{what}: tensor `{}` differs between the straight and the resumed run",
            ta.name
        );
    }
    let (ma, mb) = (metrics(a), metrics(b));
    for (i, (la, lb)) in ma.lines().zip(mb.lines()).enumerate() {
        assert_eq!(la, lb, "{what}: metrics line {}", i + 1);
    }
    assert_eq!(
        ma.lines().count(),
        mb.lines().count(),
        "{what}: metrics lines"
    );
}

/// Straight run of 20 steps vs. a run whose checkpoints after `k` are deleted (as if it had
/// been killed right after writing step k's) and that is then resumed to 20.
fn resume_matches(device: DeviceChoice, ks: &[u64]) {
    let tmp = tempfile::tempdir().unwrap();
    let straight = tmp.path().join("straight");
    train::train(&small_config(&straight, device), "t", &mut Silent).unwrap();
    for &k in ks {
        let what = format!("{device:?} resumed after step {k}");
        let dir = tmp.path().join(format!("resumed-{k}"));
        let mut c = small_config(&dir, device);
        c.checkpoint_every = k;
        train::train(&c, "t", &mut Silent).unwrap();
        for (step, path) in store::list(&store::checkpoint_dir(&dir)).unwrap() {
            if step > k {
                std::fs::remove_file(path).unwrap();
            }
        }
        // A torn line at the end, as a kill in mid-write leaves it.
        let mut log = metrics(&dir);
        log.push_str("{\"kind\":\"step\",\"st");
        std::fs::write(dir.join("metrics.jsonl"), log).unwrap();
        let config = checkpoint::load_run_config(&dir).unwrap();
        train::resume(&config, &dir, &mut Silent).unwrap();
        assert_same_run(&what, &straight, &dir);
    }
}

#[test]
fn resume_is_bit_exact_on_cpu() {
    // 7: mid-epoch; 9: the last step of epoch 0, before its evaluation; 20: the end.
    resume_matches(DeviceChoice::Cpu, &[7, 9, 20]);
}

#[test]
fn resume_is_bit_exact_on_gpu() {
    if common::gpu().is_none() {
        return;
    }
    resume_matches(DeviceChoice::Gpu, &[7, 9]);
}

#[test]
fn keeps_the_newest_k_and_cleans_temporaries() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let ckdir = store::checkpoint_dir(&dir);
    std::fs::create_dir_all(&ckdir).unwrap();
    let stale = ckdir.join(".tmp-123-step-000004.safetensors");
    std::fs::write(&stale, b"half a checkpoint").unwrap();
    let mut c = small_config(&dir, DeviceChoice::Cpu);
    c.max_steps = 10;
    c.checkpoint_every = 2;
    c.keep_checkpoints = 3;
    train::train(&c, "t", &mut Silent).unwrap();
    assert!(
        !stale.exists(),
        "the leftover temporary file was not removed"
    );
    let steps: Vec<u64> = store::list(&ckdir).unwrap().iter().map(|s| s.0).collect();
    assert_eq!(steps, vec![10, 8, 6]);
    let names: Vec<String> = std::fs::read_dir(&ckdir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(
        names.len(),
        3,
        "only the kept checkpoints remain: {names:?}"
    );
}

#[test]
fn atomic_write_replaces_whole_files_and_leaves_no_temporary() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("f.bin");
    checkpoint::atomic::write_atomic(&path, b"first").unwrap();
    checkpoint::atomic::write_atomic(&path, b"second, longer").unwrap();
    assert_eq!(std::fs::read(&path).unwrap(), b"second, longer");
    assert_eq!(std::fs::read_dir(tmp.path()).unwrap().count(), 1);
    // Into a directory that does not exist: an error naming the path, no panic.
    let bad = tmp.path().join("missing").join("f.bin");
    let err = checkpoint::atomic::write_atomic(&bad, b"x").unwrap_err();
    assert!(err.to_string().contains("missing"), "{err}");
}

/// A CPU executor of the small model, and a checkpoint of it as bytes.
fn small_exec() -> CpuExecutor {
    let c = small_config(Path::new("unused"), DeviceChoice::Cpu);
    let model = c.model(784, 10).unwrap();
    let plan = plan::compile(&model, 4, c.optimizer().unwrap()).unwrap();
    let mut exec = CpuExecutor::<f32>::new(plan);
    train::initialize(&mut exec, 3).unwrap();
    exec
}

fn checkpoint_bytes(exec: &mut CpuExecutor, path: &Path) -> Vec<u8> {
    let c = small_config(Path::new("unused"), DeviceChoice::Cpu);
    let tensors = checkpoint::state::capture(exec).unwrap();
    let progress = checkpoint::Progress::start();
    let meta = checkpoint::state::metadata(exec.plan(), &c, &progress);
    format::encode(path, &tensors, &meta).unwrap()
}

fn expect_checkpoint_error(what: &str, r: Result<impl std::fmt::Debug, Error>, needle: &str) {
    match r {
        Err(Error::Checkpoint { path, reason }) => {
            assert!(
                path.to_string_lossy().contains("ck.safetensors") || what.contains("dir"),
                "{what}: error names {path:?}, not the file"
            );
            assert!(
                reason.contains(needle),
                "{what}: reason `{reason}` does not say `{needle}`"
            );
        }
        other => panic!("{what}: expected a checkpoint error saying `{needle}`, got {other:?}"),
    }
}

#[test]
fn every_truncation_is_refused() {
    let path = PathBuf::from("/nonexistent/ck.safetensors");
    let mut exec = small_exec();
    let bytes = checkpoint_bytes(&mut exec, &path);
    let header_end = 8 + u64::from_le_bytes(bytes[..8].try_into().unwrap()) as usize;
    // The intact file reads and restores.
    let file = format::decode(&path, &bytes).unwrap();
    checkpoint::restore(&mut exec, &file).unwrap();
    // Every byte boundary of the length field and the header, then points in the data.
    let data = bytes.len() - header_end;
    let mut cuts: Vec<usize> = (0..=header_end).collect();
    cuts.extend([1, 4, data / 3, data / 2, data - 4, data - 1].map(|d| header_end + d));
    for cut in cuts {
        let r = format::decode(&path, &bytes[..cut]);
        assert!(
            matches!(r, Err(Error::Checkpoint { .. })),
            "truncated at byte {cut} of {}: {:?}",
            bytes.len(),
            r.map(|f| f.tensors.len())
        );
    }
    // And bytes appended.
    let mut longer = bytes.clone();
    longer.extend([0u8; 4]);
    expect_checkpoint_error(
        "appended bytes",
        format::decode(&path, &longer).map(|_| ()),
        "data section",
    );
}

#[test]
fn a_huge_declared_header_is_refused_without_allocating_it() {
    let path = PathBuf::from("ck.safetensors");
    for declared in [u64::MAX, 1 << 40, 200_000_000, 1000] {
        let mut bytes = declared.to_le_bytes().to_vec();
        bytes.extend(b"{}");
        expect_checkpoint_error(
            &format!("header length {declared}"),
            format::decode(&path, &bytes).map(|_| ()),
            "declares",
        );
    }
}

/// Builds a safetensors file from a hand-written header and data.
fn raw_file(header: &str, data: &[u8]) -> Vec<u8> {
    let mut out = (header.len() as u64).to_le_bytes().to_vec();
    out.extend(header.as_bytes());
    out.extend(data);
    out
}

#[test]
fn duplicate_names_and_bad_headers_are_refused() {
    let path = PathBuf::from("ck.safetensors");
    let dup = raw_file(
        r#"{"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},"a":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
        &[0; 8],
    );
    expect_checkpoint_error(
        "duplicate",
        format::decode(&path, &dup).map(|_| ()),
        "`a` appears more than once",
    );
    let not_json = raw_file("{\"a\": [", &[]);
    expect_checkpoint_error(
        "not json",
        format::decode(&path, &not_json).map(|_| ()),
        "JSON",
    );
    let not_utf8 = raw_file("\u{0}", &[]);
    let mut not_utf8 = not_utf8;
    not_utf8[8] = 0xff;
    expect_checkpoint_error(
        "not utf8",
        format::decode(&path, &not_utf8).map(|_| ()),
        "UTF-8",
    );
    let overlap = raw_file(
        r#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[1],"data_offsets":[4,8]}}"#,
        &[0; 8],
    );
    expect_checkpoint_error(
        "overlap",
        format::decode(&path, &overlap).map(|_| ()),
        "offsets",
    );
    let wrong_span = raw_file(
        r#"{"a":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#,
        &[0; 8],
    );
    expect_checkpoint_error(
        "span",
        format::decode(&path, &wrong_span).map(|_| ()),
        "dtype and shape",
    );
}

/// Re-encodes a checkpoint after `edit` changes its tensors.
fn edited(
    bytes: &[u8],
    path: &Path,
    edit: impl FnOnce(&mut Vec<StoredTensor>),
) -> format::TensorFile {
    let mut file = format::decode(path, bytes).unwrap();
    edit(&mut file.tensors);
    let again = format::encode(path, &file.tensors, &file.metadata).unwrap();
    format::decode(path, &again).unwrap()
}

#[test]
fn wrong_shapes_dtypes_and_names_are_listed() {
    let path = PathBuf::from("ck.safetensors");
    let mut exec = small_exec();
    let bytes = checkpoint_bytes(&mut exec, &path);
    let file = edited(&bytes, &path, |ts| {
        let w = ts.iter_mut().find(|t| t.name == "layers.1.weight").unwrap();
        w.shape = vec![16, 12]; // the plan's is [12, 16]: same count, transposed
        let b = ts.iter_mut().find(|t| t.name == "layers.0.bias").unwrap();
        b.dtype = safetensors::Dtype::I32;
        ts.retain(|t| t.name != "optimizer.layers.2.bias.state1");
        ts.push(StoredTensor::from_f32(
            "layers.9.weight",
            vec![2],
            &[1.0, 2.0],
        ));
    });
    let err = checkpoint::restore(&mut exec, &file)
        .unwrap_err()
        .to_string();
    for needle in [
        "4 problems",
        "`layers.1.weight` has shape [16, 12], expected [12, 16]",
        "`layers.0.bias` has dtype I32, expected F32",
        "`optimizer.layers.2.bias.state1` is missing",
        "`layers.9.weight` (F32 [2]) is not a tensor of this model",
        "ck.safetensors",
    ] {
        assert!(err.contains(needle), "`{err}` does not say `{needle}`");
    }
    // A newer format version is refused by name.
    let mut file = format::decode(&path, &bytes).unwrap();
    file.metadata.insert("format_version".into(), "99".into());
    let err = checkpoint::restore(&mut exec, &file)
        .unwrap_err()
        .to_string();
    assert!(err.contains("version `99`"), "{err}");
}

#[test]
fn newest_valid_skips_a_corrupt_newer_file() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let mut c = small_config(&dir, DeviceChoice::Cpu);
    c.max_steps = 4;
    c.checkpoint_every = 2;
    train::train(&c, "t", &mut Silent).unwrap();
    let ckdir = store::checkpoint_dir(&dir);
    let newest = ckdir.join(store::file_name(4));
    let bytes = std::fs::read(&newest).unwrap();
    std::fs::write(&newest, &bytes[..bytes.len() / 2]).unwrap();
    let (file, skipped) = checkpoint::newest(&dir).unwrap();
    assert_eq!(file.metadata.get("step").map(String::as_str), Some("2"));
    assert_eq!(skipped.len(), 1);
    assert!(
        skipped[0].to_string().contains("step-000004"),
        "{}",
        skipped[0]
    );
    // With every checkpoint unreadable, resume says so.
    std::fs::write(ckdir.join(store::file_name(2)), b"junk").unwrap();
    let err = checkpoint::newest(&dir).unwrap_err().to_string();
    assert!(err.contains("no readable checkpoint"), "{err}");
}

#[test]
fn export_then_init_from_gives_the_same_weights() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let mut c = small_config(&dir, DeviceChoice::Cpu);
    c.max_steps = 3;
    train::train(&c, "t", &mut Silent).unwrap();
    let out = checkpoint::export(&dir, None).unwrap();
    let exported = format::read(&out).unwrap();
    assert!(
        exported
            .tensors
            .iter()
            .all(|t| !t.name.starts_with("optimizer.")),
        "export holds parameters only"
    );
    assert_eq!(exported.tensors.len(), 6);
    let mut exec = small_exec();
    checkpoint::init_from(&mut exec, &out).unwrap();
    for p in exec.plan().params.clone() {
        let got = exec.read(p.value).unwrap();
        assert_eq!(
            Some(got),
            exported.get(&p.name).unwrap().to_f32(),
            "{}",
            p.name
        );
    }
    // A full checkpoint also serves as --init-from (its optimizer entries are ignored).
    let (full, _) = checkpoint::newest(&dir).unwrap();
    checkpoint::init_from(&mut exec, &full.path).unwrap();
    // A file for another model: every mismatch is listed.
    let wrong = tmp.path().join("wrong.safetensors");
    let mut ts = exported.tensors.clone();
    ts.retain(|t| t.name != "layers.2.bias");
    let w = ts.iter_mut().find(|t| t.name == "layers.0.weight").unwrap();
    w.shape = vec![12, 784];
    w.bytes.truncate(12 * 784 * 4);
    let bytes = format::encode(&wrong, &ts, &BTreeMap::new()).unwrap();
    std::fs::write(&wrong, bytes).unwrap();
    let err = checkpoint::init_from(&mut exec, &wrong)
        .unwrap_err()
        .to_string();
    assert!(
        err.contains("`layers.0.weight` has shape [12, 784], expected [16, 784]"),
        "{err}"
    );
    assert!(err.contains("`layers.2.bias` is missing"), "{err}");
    assert!(err.contains("wrong.safetensors"), "{err}");
}

#[test]
fn metrics_truncation_keeps_steps_up_to_the_checkpoint_and_earlier_evals() {
    let tmp = tempfile::tempdir().unwrap();
    let p = tmp.path().join("metrics.jsonl");
    let lines = [
        r#"{"kind":"step","step":1}"#,
        r#"{"kind":"step","step":2}"#,
        r#"{"kind":"eval","split":"val","step":2}"#,
        r#"{"kind":"step","step":3}"#,
        r#"{"kind":"step","step":4}"#,
        r#"{"kind":"eval","split":"val","step":4}"#,
        r#"{"kind":"step","step":5}"#,
    ];
    std::fs::write(&p, lines.join("\n") + "\n{\"kind\":\"st").unwrap();
    assert_eq!(store::truncate_metrics(&p, 4).unwrap(), 5);
    assert_eq!(
        std::fs::read_to_string(&p).unwrap(),
        lines[..5].join("\n") + "\n"
    );
    assert_eq!(store::truncate_metrics(&p, 2).unwrap(), 2);
}

/// The binary killed with SIGKILL at random moments of a run that checkpoints every step:
/// every checkpoint file left behind reads whole, the newest loads, and `--resume` then
/// finishes the run with exactly the parameters and log of a run never killed.
#[test]
fn killed_runs_resume_to_the_same_result() {
    let exe = env!("CARGO_BIN_EXE_gradscope");
    let tmp = tempfile::tempdir().unwrap();
    let args = |dir: &Path| -> Vec<String> {
        [
            "train",
            "--device",
            "cpu",
            "--hidden",
            "16",
            "--batch-size",
            "32",
            "--max-steps",
            "40",
            "--checkpoint-every",
            "1",
            "--keep-checkpoints",
            "3",
            "--stats-every",
            "5",
            "--quiet",
            "--run-dir",
        ]
        .iter()
        .map(|s| s.to_string())
        .chain([dir.display().to_string()])
        .collect()
    };
    let reference = tmp.path().join("reference");
    let t0 = Instant::now();
    let status = Command::new(exe)
        .args(args(&reference))
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let full = t0.elapsed();
    // Seeded kill times spread over the run (an LCG: no dependency, reproducible).
    let mut state = 0x9e37_79b9_7f4a_7c15u64;
    let (mut resumed, mut attempts) = (0, 0);
    while resumed < 6 && attempts < 30 {
        attempts += 1;
        state = state
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        let fraction = 0.2 + 0.75 * ((state >> 11) as f64 / (1u64 << 53) as f64);
        let dir = tmp.path().join(format!("killed-{attempts}"));
        let mut child = Command::new(exe)
            .args(args(&dir))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        std::thread::sleep(full.mul_f64(fraction));
        child.kill().unwrap(); // SIGKILL
        let status = child.wait().unwrap();
        if status.success() {
            continue; // finished before the kill; try another moment
        }
        let ckdir = store::checkpoint_dir(&dir);
        let files = store::list(&ckdir).unwrap();
        if files.is_empty() {
            continue; // killed before the first checkpoint
        }
        for (step, path) in &files {
            let file = format::read(path)
                .unwrap_or_else(|e| panic!("attempt {attempts}: step {step} unreadable: {e}"));
            checkpoint::state::progress_of(&file).unwrap();
        }
        let (newest, skipped) = checkpoint::newest(&dir).unwrap();
        assert!(skipped.is_empty(), "attempt {attempts}: {skipped:?}");
        let newest_step = newest.metadata["step"].clone();
        let status = Command::new(exe)
            .args(["train", "--resume", &dir.display().to_string(), "--quiet"])
            .stdout(Stdio::null())
            .status()
            .unwrap();
        assert!(
            status.success(),
            "attempt {attempts}: resume from step {newest_step} failed"
        );
        assert_same_run(
            &format!("killed at step {newest_step} (attempt {attempts})"),
            &reference,
            &dir,
        );
        resumed += 1;
    }
    assert!(
        resumed >= 3,
        "only {resumed} of {attempts} kills landed mid-run"
    );
}

#[test]
fn a_fresh_run_in_a_used_directory_drops_its_old_checkpoints() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let mut c = small_config(&dir, DeviceChoice::Cpu);
    c.max_steps = 6;
    c.checkpoint_every = 2;
    train::train(&c, "t", &mut Silent).unwrap();
    c.max_steps = 3;
    c.checkpoint_every = 0;
    train::train(&c, "t", &mut Silent).unwrap();
    let steps: Vec<u64> = store::list(&store::checkpoint_dir(&dir))
        .unwrap()
        .iter()
        .map(|s| s.0)
        .collect();
    assert_eq!(steps, vec![3]);
    let _ = Checkpointer::new(&dir, 1, 1).unwrap();
}

#[test]
fn cli_export_writes_parameters_and_resume_refuses_a_preset() {
    let exe = env!("CARGO_BIN_EXE_gradscope");
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let d = dir.display().to_string();
    let train = [
        "train",
        "--device",
        "cpu",
        "--hidden",
        "8",
        "--batch-size",
        "64",
        "--max-steps",
        "3",
        "--quiet",
        "--run-dir",
        &d,
    ];
    assert!(
        Command::new(exe)
            .args(train)
            .stdout(Stdio::null())
            .status()
            .unwrap()
            .success()
    );
    let out = tmp.path().join("model.safetensors");
    let o = out.display().to_string();
    let status = Command::new(exe)
        .args(["export", &d, "--out", &o])
        .stdout(Stdio::null())
        .status()
        .unwrap();
    assert!(status.success());
    let names: Vec<String> = format::read(&out)
        .unwrap()
        .tensors
        .iter()
        .map(|t| t.name.clone())
        .collect();
    assert_eq!(
        names.len(),
        4,
        "layers.{{0,1}}.{{weight,bias}} only, got {names:?}"
    );
    let r = Command::new(exe)
        .args(["train", "--resume", &d, "--preset", "mlp"])
        .output()
        .unwrap();
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("--resume takes its settings"), "{err}");
    // A run directory without checkpoints: a clear error, non-zero exit.
    let empty = tmp.path().join("empty");
    std::fs::create_dir_all(&empty).unwrap();
    let r = Command::new(exe)
        .args(["export", &empty.display().to_string()])
        .output()
        .unwrap();
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(err.contains("no readable checkpoint"), "{err}");
    // Resuming from a directory that no run wrote names what it lacks.
    let r = Command::new(exe)
        .args(["train", "--resume", &empty.display().to_string()])
        .output()
        .unwrap();
    assert!(!r.status.success());
    let err = String::from_utf8_lossy(&r.stderr);
    assert!(
        err.contains("is not a run directory") && err.contains("config.toml"),
        "{err}"
    );
}
