//! `gradscope study` end to end: the list of studies, a quick built-in study with a setting
//! laid over every run, a second invocation that skips every finished run, and bad input
//! refused with a message naming it.

use std::process::{Command, Output};

fn gradscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gradscope"))
        .args(args)
        .output()
        .expect("the binary runs")
}

fn fails_with(args: &[&str], needles: &[&str]) {
    let out = gradscope(args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{args:?} should fail; stderr: {err}");
    assert!(!err.contains("panicked"), "{args:?} panicked: {err}");
    for n in needles {
        assert!(err.contains(n), "{args:?}: stderr lacks `{n}`:\n{err}");
    }
}

#[test]
fn lists_the_builtin_studies() {
    let out = gradscope(&["study", "--list"]);
    assert!(out.status.success());
    let text = String::from_utf8_lossy(&out.stdout);
    for name in [
        "depth-and-activation",
        "initialization",
        "normalization",
        "shortcuts",
        "clipping",
        "optimizers",
    ] {
        assert!(text.contains(name), "--list lacks {name}:\n{text}");
    }
}

#[test]
fn a_quick_study_runs_and_continues() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("clip");
    let dir = dir.to_str().unwrap();
    let args = [
        "study",
        "clipping",
        "--quick",
        "--device",
        "cpu",
        "--dir",
        dir,
        "--set",
        "max_steps=4",
    ];
    let out = gradscope(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("Gradient clipping"), "{text}");
    assert!(
        text.contains("Clipped by global norm 1, the run stayed finite for all 4 steps"),
        "{text}"
    );
    assert!(text.trim_end().ends_with("report.html"), "{text}");
    assert!(
        std::path::Path::new(dir)
            .join("report/report.html")
            .is_file()
    );
    // Again: every run is finished, nothing is trained.
    let out = gradscope(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    assert_eq!(err.matches("finished earlier, skipped").count(), 3, "{err}");
    assert!(!err.contains("training"), "{err}");
}

#[test]
fn bad_input_is_refused() {
    fails_with(
        &["study", "depth"],
        &["unknown study `depth`", "depth-and-activation"],
    );
    fails_with(
        &["study", "clipping", "--quick", "--set", "lr"],
        &["--set `lr`", "KEY=VALUE"],
    );
    let tmp = tempfile::tempdir().unwrap();
    let d = tmp.path().join("c");
    fails_with(
        &[
            "study",
            "clipping",
            "--quick",
            "--set",
            "lrr=0.1",
            "--dir",
            d.to_str().unwrap(),
        ],
        &[
            "command line",
            "`lrr` is not a setting of `gradscope train`",
        ],
    );
    let file = tmp.path().join("s.toml");
    std::fs::write(
        &file,
        "name = \"s\"\n[[axis]]\nkey = \"depht\"\nvalues = [1]\n",
    )
    .unwrap();
    fails_with(
        &[
            "study",
            "--file",
            file.to_str().unwrap(),
            "--dir",
            tmp.path().to_str().unwrap(),
        ],
        &["axis `depht`", "not a setting of `gradscope train`"],
    );
}
