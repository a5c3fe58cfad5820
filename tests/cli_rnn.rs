//! Recurrent presets end to end through the binary: each task trains a few steps, logs
//! ‖∂L/∂h_t‖ for every step of every layer, and the report draws it against the time step;
//! a sequence length, hidden size or depth of 0, a task without a recurrent model, and an
//! unrolled batch past the device's limits are refused before anything runs.

mod common;

use std::process::{Command, Output};

fn gradscope(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut c = Command::new(env!("CARGO_BIN_EXE_gradscope"));
    c.args(args);
    for (k, v) in env {
        c.env(k, v);
    }
    c.output().expect("the binary runs")
}

fn fails_with(args: &[&str], env: &[(&str, &str)], needles: &[&str]) {
    let out = gradscope(args, env);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail; stderr: {err}");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: stderr lacks `{n}`:\n{err}");
    }
}

/// Trains `preset` for 3 steps on the CPU and returns the hidden-gradient norms logged.
fn short_run(
    preset: &str,
    seq_len: &str,
    extra: &[&str],
) -> (tempfile::TempDir, Vec<serde_json::Value>) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    let d = dir.to_str().unwrap();
    let mut args = vec![
        "train",
        "--preset",
        preset,
        "--device",
        "cpu",
        "--seq-len",
        seq_len,
        "--hidden-size",
        "8",
        "--batch-size",
        "8",
        "--max-steps",
        "3",
        "--train-samples",
        "64",
        "--stats-every",
        "1",
        "--quiet",
        "--run-dir",
        d,
    ];
    args.extend_from_slice(extra);
    let out = gradscope(&args, &[]);
    assert!(
        out.status.success(),
        "{preset}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    let norms = metrics
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "step")
        .map(|v| v["hidden_grad_norms"].clone())
        .collect();
    (tmp, norms)
}

#[test]
fn every_task_trains_and_logs_hidden_gradient_norms_per_step() {
    for (preset, t, layers) in [
        ("lstm-adding", 12, "1"),
        ("gru-memory", 9, "2"),
        ("rnn-rows", 28, "1"),
    ] {
        let (_tmp, norms) = short_run(preset, &t.to_string(), &["--rnn-layers", layers]);
        assert_eq!(norms.len(), 3, "{preset}: one line per step");
        for step in &norms {
            let per_layer = step
                .as_array()
                .expect("norms on every full-statistics step");
            assert_eq!(
                per_layer.len(),
                layers.parse::<usize>().unwrap(),
                "{preset}"
            );
            for (l, layer) in per_layer.iter().enumerate() {
                assert_eq!(layer["layer"], format!("rnn.l{l}"));
                let n = layer["norms"].as_array().unwrap();
                assert_eq!(n.len(), t, "{preset}: one norm per time step");
                assert!(
                    n.iter()
                        .all(|v| v.as_f64().is_some_and(|x| x.is_finite() && x >= 0.0))
                );
            }
        }
    }
}

#[test]
fn report_draws_the_hidden_gradient_against_time() {
    let (tmp, _) = short_run(
        "lstm-adding",
        "10",
        &["--truncate", "4", "--forget-bias", "1"],
    );
    let dir = tmp.path().join("run");
    let out = gradscope(&["report", dir.to_str().unwrap()], &[]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for ext in ["png", "svg"] {
        let f = dir
            .join("report")
            .join(format!("hidden_grad_over_time.{ext}"));
        assert!(f.is_file(), "missing {}", f.display());
    }
    let svg = std::fs::read_to_string(dir.join("report/hidden_grad_over_time.svg")).unwrap();
    assert!(svg.contains("time step"), "the x axis is not the time step");
}

#[test]
fn bad_sequence_settings_are_refused_before_anything_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("run");
    let d = d.to_str().unwrap();
    let base = [
        "train",
        "--device",
        "cpu",
        "--max-steps",
        "1",
        "--quiet",
        "--run-dir",
        d,
    ];
    let with = |extra: &[&'static str]| -> Vec<&str> {
        base.iter().copied().chain(extra.iter().copied()).collect()
    };
    fails_with(
        &with(&["--preset", "lstm-adding", "--seq-len", "0"]),
        &[],
        &["sequence length is 0"],
    );
    fails_with(
        &with(&["--preset", "gru-memory", "--hidden-size", "0"]),
        &[],
        &["hidden_size", "0"],
    );
    fails_with(
        &with(&["--preset", "rnn-adding", "--rnn-layers", "0"]),
        &[],
        &["rnn_layers"],
    );
    fails_with(
        &with(&["--preset", "lstm-rows", "--seq-len", "27"]),
        &[],
        &["divide 784"],
    );
    fails_with(
        &with(&["--model", "mlp", "--task", "adding"]),
        &[],
        &["needs a recurrent model"],
    );
    fails_with(&with(&["--model", "lstm"]), &[], &["choose a task"]);
    fails_with(
        &with(&["--preset", "lstm-adding", "--task", "sorting"]),
        &[],
        &["unknown task", "adding"],
    );
    assert!(
        !std::path::Path::new(d).join("metrics.jsonl").exists(),
        "something ran"
    );
}

#[test]
fn an_unrolled_batch_past_the_device_limit_is_refused_before_any_step() {
    if common::gpu().is_none() {
        return;
    }
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("run");
    // B·T·H = 64·200·64 floats for each layer output: 3.3 MB, over a 1 MB binding cap.
    fails_with(
        &[
            "train",
            "--preset",
            "lstm-adding",
            "--device",
            "gpu",
            "--seq-len",
            "200",
            "--hidden-size",
            "64",
            "--batch-size",
            "64",
            "--max-steps",
            "1",
            "--quiet",
            "--run-dir",
            d.to_str().unwrap(),
        ],
        &[("GRADSCOPE_MAX_STORAGE_BINDING", "1000000")],
        &["rnn.l0", "1000000 bytes", "batch size"],
    );
    assert!(!d.join("metrics.jsonl").exists(), "a step ran");
}
