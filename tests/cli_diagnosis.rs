//! The binary end to end for clipping, the non-finite policies and diagnosis: what lands
//! in metrics.jsonl, summary.json, and on the console, on both executors.

mod common;

use std::process::{Command, Output};

fn gradscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gradscope"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn run(dir: &str, extra: &[&str]) -> Output {
    let mut v = vec![
        "train",
        "--depth",
        "2",
        "--width",
        "16",
        "--max-steps",
        "5",
        "--batch-size",
        "32",
        "--run-dir",
        dir,
        "--quiet",
    ];
    v.extend_from_slice(extra);
    gradscope(&v)
}

fn steps(dir: &std::path::Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(dir.join("metrics.jsonl"))
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
        .filter(|v| v["kind"] == "step")
        .collect()
}

/// `device` is "cpu" or "gpu" (the GPU variant needs an adapter).
fn devices() -> Vec<&'static str> {
    let mut d = vec!["cpu"];
    if common::gpu().is_some() {
        d.push("gpu");
    }
    d
}

#[test]
fn clip_norm_logs_norm_before_and_after_every_step() {
    for device in devices() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let out = run(
            dir.to_str().unwrap(),
            &[
                "--device",
                device,
                "--clip-norm",
                "0.01",
                "--stats-every",
                "2",
            ],
        );
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        let s = steps(&dir);
        assert_eq!(s.len(), 5);
        for v in &s {
            let before = v["grad_norm"].as_f64().unwrap();
            let after = v["grad_norm_clipped"].as_f64().unwrap();
            let scale = v["clip_scale"].as_f64().unwrap();
            assert!(after <= 0.01 * 1.0001, "{device}: {v}");
            assert!(
                (before * scale - after).abs() <= 1e-4 * after,
                "{device}: {v}"
            );
        }
    }
}

#[test]
fn halt_names_the_origin_and_stops() {
    for device in devices() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let out = run(
            dir.to_str().unwrap(),
            &["--device", device, "--optimizer", "sgd", "--lr", "1e30"],
        );
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{device}: should halt");
        assert!(!err.contains("panicked"), "{err}");
        for needle in ["first non-finite value at step", "pass, layer", "halting"] {
            assert!(err.contains(needle), "{device}: lacks `{needle}`: {err}");
        }
    }
}

#[test]
fn skip_counts_skipped_steps_and_continue_goes_on() {
    for device in devices() {
        for policy in ["skip", "continue"] {
            let tmp = tempfile::tempdir().unwrap();
            let dir = tmp.path().join("run");
            let out = run(
                dir.to_str().unwrap(),
                &[
                    "--device",
                    device,
                    "--optimizer",
                    "sgd",
                    "--lr",
                    "1e30",
                    "--on-nonfinite",
                    policy,
                ],
            );
            let err = String::from_utf8_lossy(&out.stderr);
            assert!(out.status.success(), "{device} {policy}: {err}");
            let summary: serde_json::Value =
                serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap())
                    .unwrap();
            let origin = &summary["first_nonfinite"];
            assert!(origin["step"].as_u64().is_some(), "{summary}");
            let kinds: Vec<&str> = summary["findings"]
                .as_array()
                .unwrap()
                .iter()
                .map(|f| f["kind"].as_str().unwrap())
                .collect();
            assert!(kinds.contains(&"non_finite"), "{kinds:?}");
            let skipped = summary["skipped_steps"].as_u64().unwrap();
            let logged = steps(&dir).iter().filter(|v| v["skipped"] == true).count() as u64;
            assert_eq!(skipped, logged, "{device} {policy}");
            if policy == "skip" {
                // The first update overflows the parameters' next forward pass at the
                // latest; from the first bad step on, every step is skipped (the update that
                // would repair it never runs), and the schedule does not advance.
                assert!(skipped >= 1, "{device}: {summary}");
            } else {
                assert_eq!(skipped, 0);
            }
        }
    }
}

#[test]
fn findings_are_printed_and_marked_in_the_table() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("run");
    // A deep sigmoid net with the default small normal init: vanishing gradients.
    let out = gradscope(&[
        "train",
        "--preset",
        "deep-sigmoid",
        "--width",
        "16",
        "--max-steps",
        "5",
        "--batch-size",
        "32",
        "--device",
        "cpu",
        "--quiet",
        "--run-dir",
        dir.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{stderr}");
    assert!(
        stderr.contains("diagnosis: step") && stderr.contains("vanishing gradients"),
        "no live line: {stderr}"
    );
    assert!(stdout.contains("findings"), "{stdout}");
    let hidden1 = stdout
        .lines()
        .find(|l| l.starts_with("hidden1 "))
        .unwrap_or_else(|| panic!("{stdout}"));
    // The last column holds the marks: V (vanishing), and L too (‖ΔW‖/‖W‖ is ~0 there).
    let marks = hidden1.split_whitespace().last().unwrap_or("");
    assert!(marks.contains('V'), "{hidden1}");
    let summary: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("summary.json")).unwrap()).unwrap();
    let f = &summary["findings"][0];
    assert_eq!(f["kind"], "vanishing_gradients", "{summary}");
    assert!(f["evidence"].as_array().is_some_and(|e| !e.is_empty()));
    assert!(f["remedies"].as_array().is_some_and(|r| r.len() == 3));
}

#[test]
fn bad_settings_are_refused() {
    for (args, needle) in [
        (vec!["--clip-norm", "-1"], "clip_norm"),
        (vec!["--clip-value", "0"], "clip_value"),
        (vec!["--clip-norm", "1", "--clip-value", "1"], "not both"),
        (vec!["--on-nonfinite", "explode"], "halt, skip or continue"),
    ] {
        let tmp = tempfile::tempdir().unwrap();
        let dir = tmp.path().join("run");
        let out = run(dir.to_str().unwrap(), &args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{args:?}");
        assert!(err.contains(needle), "{args:?}: {err}");
    }
    // A `[diagnosis]` table with an unknown key is refused, a known one accepted.
    let tmp = tempfile::tempdir().unwrap();
    let cfg = tmp.path().join("c.toml");
    std::fs::write(&cfg, "[diagnosis]\nvanishing_ratio = 1e-4\nbogus = 1\n").unwrap();
    let dir = tmp.path().join("run");
    let out = run(
        dir.to_str().unwrap(),
        &["--config", cfg.to_str().unwrap(), "--device", "cpu"],
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("bogus"));
    std::fs::write(&cfg, "[diagnosis]\nvanishing_ratio = 1e-4\n").unwrap();
    let out = run(
        dir.to_str().unwrap(),
        &["--config", cfg.to_str().unwrap(), "--device", "cpu"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let written = std::fs::read_to_string(dir.join("config.toml")).unwrap();
    assert!(written.contains("vanishing_ratio = 0.0001"), "{written}");
}
