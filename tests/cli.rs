//! The binary end to end: a short run writes its logs and prints the table; every bad input
//! gets an error that names the problem, a non-zero exit, and no panic.

mod common;

use std::path::Path;
use std::process::{Command, Output};

fn gradscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gradscope"))
        .args(args)
        .output()
        .expect("the binary runs")
}

/// Asserts a failure whose stderr mentions every one of `needles`, without a panic.
fn fails_with(args: &[&str], needles: &[&str]) {
    let out = gradscope(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail; stderr: {err}");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: stderr lacks `{n}`:\n{err}");
    }
}

fn small_run<'a>(dir: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "train",
        "--depth",
        "2",
        "--width",
        "16",
        "--max-steps",
        "6",
        "--batch-size",
        "32",
        "--run-dir",
        dir,
    ];
    v.extend_from_slice(extra);
    v
}

#[test]
fn cpu_run_writes_metrics_summary_and_table() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let d = dir.to_str().unwrap();
    let out = gradscope(&small_run(d, &["--device", "cpu", "--stats-every", "2"]));
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stderr: {stderr}");
    assert!(
        stdout.contains("hidden1") && stdout.contains("output"),
        "no per-layer table:\n{stdout}"
    );
    assert!(
        stderr.contains("CPU executor"),
        "the executor choice is not said:\n{stderr}"
    );
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    let lines: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let steps: Vec<&serde_json::Value> = lines.iter().filter(|l| l["kind"] == "step").collect();
    assert_eq!(steps.len(), 6);
    for s in &steps {
        assert!(s["loss"].as_f64().unwrap().is_finite());
        assert!(s["grad_norm"].as_f64().unwrap() > 0.0);
    }
    // Full statistics on steps 1, 3, 5 and the last.
    let with_layers: Vec<u64> = steps
        .iter()
        .filter(|s| s.get("layers").is_some())
        .map(|s| s["step"].as_u64().unwrap())
        .collect();
    assert_eq!(with_layers, vec![1, 3, 5, 6]);
    assert!(
        lines
            .iter()
            .any(|l| l["kind"] == "eval" && l["split"] == "val")
    );
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    assert_eq!(summary["steps"], 6);
    assert!(summary["samples_per_second"].as_f64().unwrap() > 0.0);
    assert!(Path::new(&dir.join("config.toml")).exists());
}

/// `--threads` sets the CPU executor's threads, and only its speed: the logs of one thread
/// and of three are the same bytes, every step's full statistics included.
#[test]
fn thread_count_changes_nothing_but_the_speed() {
    let tmp = tempfile::tempdir().unwrap();
    for model in ["mlp", "lenet5"] {
        let metrics = |threads: &str| {
            let dir = tmp.path().join(format!("{model}-{threads}"));
            let d = dir.to_str().unwrap();
            let extra = [
                "--device",
                "cpu",
                "--stats-every",
                "1",
                "--model",
                model,
                "--threads",
                threads,
            ];
            let out = gradscope(&small_run(d, &extra));
            let stdout = String::from_utf8_lossy(&out.stdout);
            let stderr = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "stderr: {stderr}");
            let said = format!("({threads} thread");
            assert!(
                stdout.contains(&said) || stderr.contains(&said),
                "{stdout}\n{stderr}"
            );
            std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap()
        };
        assert_eq!(
            metrics("1"),
            metrics("3"),
            "{model}: one thread against three"
        );
    }
    fails_with(&["train", "--threads", "0"], &["--threads", "0"]);
    fails_with(&["bench", "--threads", "100000"], &["--threads", "100000"]);
}

#[test]
fn gpu_run_when_an_adapter_exists() {
    if common::gpu().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let out = gradscope(&small_run(dir.to_str().unwrap(), &["--device", "gpu"]));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "stderr: {stderr}");
    assert!(stderr.contains("GPU executor"), "{stderr}");
}

#[test]
fn devices_lists_or_says_none() {
    let out = gradscope(&["devices"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("max storage binding") || text.contains("no GPU adapter"),
        "{text}"
    );
}

#[test]
fn bad_settings_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("r");
    let d = d.to_str().unwrap();
    fails_with(
        &["train", "--batch-size", "0", "--run-dir", d],
        &["batch_size"],
    );
    fails_with(
        &["train", "--batch-size", "-3", "--run-dir", d],
        &["batch_size"],
    );
    fails_with(&["train", "--lr", "NaN", "--run-dir", d], &["lr"]);
    fails_with(&["train", "--lr", "-0.1", "--run-dir", d], &["lr"]);
    fails_with(&["train", "--width", "0", "--run-dir", d], &["width"]);
    fails_with(
        &["train", "--hidden", "16,0,8", "--run-dir", d],
        &["hidden"],
    );
    fails_with(
        &["train", "--activation", "swishy", "--run-dir", d],
        &["swishy", "relu"],
    );
    fails_with(
        &["train", "--optimizer", "lion", "--run-dir", d],
        &["lion", "adam"],
    );
    fails_with(
        &["train", "--preset", "nope", "--run-dir", d],
        &["nope", "deep-sigmoid"],
    );
    fails_with(&["train", "--device", "tpu", "--run-dir", d], &["tpu"]);
    fails_with(
        &["train", "--adapter", "no-such-adapter-xyz", "--run-dir", d],
        &["no-such-adapter-xyz"],
    );
    fails_with(&["train", "--backend", "glide", "--run-dir", d], &["glide"]);
}

#[test]
fn bad_config_files_are_named() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("r");
    let d = d.to_str().unwrap();
    let unknown = tmp.path().join("unknown.toml");
    std::fs::write(&unknown, "depth = 2\nlearning_rate = 0.1\n").unwrap();
    fails_with(
        &[
            "train",
            "--config",
            unknown.to_str().unwrap(),
            "--run-dir",
            d,
        ],
        &["learning_rate", "unknown.toml"],
    );
    let typed = tmp.path().join("typed.toml");
    std::fs::write(&typed, "depth = \"deep\"\n").unwrap();
    fails_with(
        &["train", "--config", typed.to_str().unwrap(), "--run-dir", d],
        &["typed.toml"],
    );
    let missing = tmp.path().join("missing.toml");
    fails_with(
        &[
            "train",
            "--config",
            missing.to_str().unwrap(),
            "--run-dir",
            d,
        ],
        &["missing.toml"],
    );
}

/// Writes an MNIST-layout directory with the given images and labels files.
fn idx_dir(images: &[u8], labels: &[u8]) -> tempfile::TempDir {
    let tmp = tempfile::tempdir().unwrap();
    std::fs::write(tmp.path().join("train-images-idx3-ubyte"), images).unwrap();
    std::fs::write(tmp.path().join("train-labels-idx1-ubyte"), labels).unwrap();
    tmp
}

fn images(n: u32, rows: u32, cols: u32, payload: usize) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 3];
    for d in [n, rows, cols] {
        v.extend_from_slice(&d.to_be_bytes());
    }
    v.extend((0..payload).map(|i| (i * 37 % 251) as u8));
    v
}

fn labels(values: &[u8]) -> Vec<u8> {
    let mut v = vec![0, 0, 8, 1];
    v.extend_from_slice(&(values.len() as u32).to_be_bytes());
    v.extend_from_slice(values);
    v
}

#[test]
fn bad_data_files_are_named() {
    let run = tempfile::tempdir().unwrap();
    let d = run.path().join("r");
    let d = d.to_str().unwrap();
    let good_labels = labels(&[0, 1, 2, 3]);
    let cases: Vec<(Vec<u8>, Vec<u8>, &str)> = vec![
        (
            vec![1, 2, 3, 4, 0, 0, 0, 0],
            good_labels.clone(),
            "train-images-idx3-ubyte",
        ),
        (
            images(4, 2, 2, 15),
            good_labels.clone(),
            "train-images-idx3-ubyte",
        ),
        (
            images(5, 2, 2, 20),
            good_labels.clone(),
            "train-labels-idx1-ubyte",
        ),
    ];
    for (imgs, lbls, needle) in cases {
        let dir = idx_dir(&imgs, &lbls);
        fails_with(
            &[
                "train",
                "--data",
                dir.path().to_str().unwrap(),
                "--run-dir",
                d,
            ],
            &[needle],
        );
    }
    // Well-formed but too small for the batch: the error says so.
    let tiny = idx_dir(&images(40, 2, 2, 160), &labels(&[1; 40]));
    fails_with(
        &[
            "train",
            "--data",
            tiny.path().to_str().unwrap(),
            "--run-dir",
            d,
        ],
        &["batch size"],
    );
    let empty = tempfile::tempdir().unwrap();
    fails_with(
        &[
            "train",
            "--data",
            empty.path().to_str().unwrap(),
            "--run-dir",
            d,
        ],
        &["train-images"],
    );
    fails_with(
        &["train", "--data", "/no/such/dir", "--run-dir", d],
        &["/no/such/dir"],
    );
}

/// Without `--run-dir`, a run's directory is runs/<time>-<name>: the preset's name when one
/// is given, else the network's (`--model`, or the stem of `--model-file`).
#[test]
fn run_directories_are_named_after_the_preset_or_the_network() {
    let tmp = tempfile::tempdir().unwrap();
    let run_in = |args: &[&str]| {
        let out = Command::new(env!("CARGO_BIN_EXE_gradscope"))
            .current_dir(tmp.path())
            .args([
                "train",
                "--max-steps",
                "1",
                "--batch-size",
                "8",
                "--device",
                "cpu",
            ])
            .args(args)
            .output()
            .expect("the binary runs");
        assert!(
            out.status.success(),
            "{args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    run_in(&["--model", "lenet5"]);
    run_in(&["--depth", "2", "--width", "8"]);
    // A run started under a name already taken this second gets a directory of its own.
    std::fs::create_dir_all(tmp.path().join("runs")).unwrap();
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs();
    for t in now..now + 30 {
        std::fs::create_dir_all(tmp.path().join(format!("runs/{t}-plain20"))).unwrap();
    }
    run_in(&["--model", "plain20"]);
    let names: Vec<String> = std::fs::read_dir(tmp.path().join("runs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    let ends = |s: &str| names.iter().filter(|n| n.ends_with(s)).count();
    assert_eq!(names.len(), 2 + 30 + 1, "{names:?}");
    assert_eq!(ends("-lenet5"), 1, "{names:?}");
    assert_eq!(ends("-mlp"), 1, "{names:?}");
    assert_eq!(ends("-plain20-2"), 1, "{names:?}");
}

/// A network too large for the machine's memory is refused with its size and the fix
/// before the CPU executor allocates it (it used to be killed while allocating).
#[test]
fn a_plan_larger_than_memory_is_refused() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let out = gradscope(&[
        "train",
        "--device",
        "cpu",
        "--batch-size",
        "8000",
        "--width",
        "65536",
        "--max-steps",
        "1",
        "--run-dir",
        dir.to_str().unwrap(),
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    assert!(
        err.contains("GiB") && err.contains("available") && err.contains("batch size"),
        "{err}"
    );
}
