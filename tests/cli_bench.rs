//! `gradscope bench` end to end on tiny sizes: the JSON names the machine, has every family,
//! finite positive timings, and GPU results that agree with the CPU twins. Speed is not
//! checked (lavapipe in CI says nothing about it). The correctness check itself is shown to
//! fail on a wrong result in `bench_check.rs`.

mod common;

use std::process::{Command, Output};

use serde_json::Value;

fn gradscope(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gradscope"))
        .args(args)
        .output()
        .expect("the binary runs")
}

const FAMILIES: [&str; 11] = [
    "matmul",
    "conv2d",
    "pool",
    "batchnorm",
    "layernorm",
    "activation",
    "loss",
    "stats",
    "reduce",
    "optimizer",
    "step",
];

fn positive(v: &Value, what: &str) -> f64 {
    let x = v
        .as_f64()
        .unwrap_or_else(|| panic!("{what} is not a number: {v}"));
    assert!(x.is_finite() && x > 0.0, "{what} = {x}");
    x
}

fn check_side(side: &Value, what: &str) {
    for key in ["median_s", "min_s", "max_s", "throughput"] {
        positive(&side[key], &format!("{what}.{key}"));
    }
    assert!(side["runs"].as_u64().unwrap() >= 1, "{what}.runs");
}

#[test]
fn bench_json_has_every_family_with_sane_numbers() {
    let ctx = common::gpu();
    let gpu = ctx.is_some();
    // Every family, but of the training steps only the MLP, LeNet-5 and dwsep: a resnet-20
    // step takes a second or more on lavapipe even at batch 2 (its convolutions are
    // measured alone in the conv2d family).
    let ops = "matmul,conv2d,pool,batchnorm,layernorm,activation,loss,stats,reduce,optimizer,\
               step mlp,step lenet5,step dwsep";
    let mut args = vec![
        "bench",
        "--op",
        ops,
        "--sizes",
        "2",
        "--repeats",
        "2",
        "--warmup",
        "1",
        "--json",
    ];
    // Named, so that a software renderer (lavapipe in CI) is measured too.
    let adapter = ctx.as_ref().map(|c| c.adapter.name.clone());
    match &adapter {
        Some(name) => args.extend(["--adapter", name]),
        None => args.push("--cpu-only"),
    }
    let out = gradscope(&args);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "bench failed: {stderr}");
    let report: Value = serde_json::from_slice(&out.stdout).expect("stdout is JSON");

    let m = &report["machine"];
    assert!(!m["cpu"].as_str().unwrap().is_empty(), "CPU named");
    assert!(m["cpu_threads"].as_u64().unwrap() >= 1);
    // The date, UTC to the second, in the JSON and the console's header.
    let started = m["started_utc"].as_str().unwrap();
    let shape: String = started
        .chars()
        .map(|c| if c.is_ascii_digit() { 'd' } else { c })
        .collect();
    assert_eq!(shape, "dddd-dd-ddTdd:dd:ddZ", "{started}");
    assert!(stderr.contains("bench, started "), "{stderr}");
    if gpu {
        let a = &m["adapter"];
        for key in ["name", "backend", "driver", "driver_info"] {
            assert!(a[key].is_string(), "adapter.{key} in {a}");
        }
        assert!(m["gpu_timing"].is_string(), "GPU timing method named");
        // The console table names the adapter too (on stderr, next to the JSON).
        assert!(stderr.contains(a["name"].as_str().unwrap()), "{stderr}");
    }

    let results = report["results"].as_array().unwrap();
    for f in FAMILIES {
        assert!(
            results.iter().any(|r| r["family"] == f),
            "family {f} missing from the results"
        );
    }
    // Each training step is timed alone (waited for) and in runs submitted back to back.
    for step in ["step mlp 784-256-256-10", "step lenet5", "step dwsep"] {
        for name in [step.to_string(), format!("{step} pipelined")] {
            assert!(
                results.iter().any(|r| r["name"] == name.as_str()),
                "{name} missing from the results"
            );
        }
    }
    for r in results {
        let what = format!("{} [{}]", r["name"], r["shape"]);
        let unit = r["unit"].as_str().unwrap();
        match unit {
            "GFLOP/s" => {
                positive(&r["flops"], &format!("{what} flops"));
            }
            "GB/s" => {
                positive(&r["bytes"], &format!("{what} bytes"));
            }
            "samples/s" => assert_eq!(r["samples"], 2, "{what}"),
            other => panic!("{what}: unknown unit {other}"),
        }
        check_side(&r["cpu"], &format!("{what} cpu"));
        if gpu {
            check_side(&r["gpu"], &format!("{what} gpu"));
            positive(&r["gpu_over_cpu"], &format!("{what} ratio"));
            let err = r["max_rel_error"].as_f64().unwrap();
            let tol = r["tolerance"].as_f64().unwrap();
            assert!(err.is_finite() && err <= tol, "{what}: error {err} > {tol}");
        } else {
            assert!(r["gpu"].is_null() && r["max_rel_error"].is_null(), "{what}");
        }
    }
    assert_eq!(report["failures"].as_array().unwrap().len(), 0);
}

#[test]
fn op_filter_selects_by_family_or_name_and_refuses_nothing_matched() {
    let out = gradscope(&[
        "bench",
        "--cpu-only",
        "--op",
        "matmul_nt,relu",
        "--sizes",
        "3",
        "--repeats",
        "1",
        "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let names: Vec<&str> = report["results"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "matmul_nt",
            "activation_forward relu",
            "activation_backward relu"
        ]
    );

    // A family's name selects that family only, not kernels of others that contain it.
    let out = gradscope(&[
        "bench",
        "--cpu-only",
        "--op",
        "conv2d",
        "--sizes",
        "1",
        "--repeats",
        "1",
        "--json",
    ]);
    assert!(out.status.success());
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let results = report["results"].as_array().unwrap();
    assert_eq!(
        results.len(),
        33,
        "8 resnet-20 and 3 depthwise shapes × 3 passes"
    );
    assert!(results.iter().all(|r| r["family"] == "conv2d"));

    let out = gradscope(&["bench", "--cpu-only", "--op", "nosuchkernel"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(err.contains("matches no kernel"), "{err}");
    assert!(!err.contains("panicked"), "{err}");
    // Refused before the machine's header: nothing was measured.
    assert!(
        out.stdout.is_empty(),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );

    let out = gradscope(&["bench", "--cpu-only", "--sizes", "0"]);
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("--sizes"));
}

#[test]
fn json_to_a_file_keeps_the_table_on_stdout() {
    let tmp = tempfile::tempdir().unwrap();
    let path = tmp.path().join("bench.json");
    let out = gradscope(&[
        "bench",
        "--cpu-only",
        "--op",
        "stats",
        "--sizes",
        "5000",
        "--repeats",
        "1",
        "--json",
        path.to_str().unwrap(),
    ]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(stdout.contains("stats_record"), "{stdout}");
    assert!(stdout.contains("CPU:"), "{stdout}");
    let report: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    assert_eq!(report["results"][0]["name"], "stats_record");
    assert_eq!(report["results"][0]["shape"], "5000 elements");
}

/// A software renderer is measured only when asked for: by default the bench says why it
/// measures the CPU alone; named, or with `--gpu-only`, it is measured.
#[test]
fn a_software_adapter_is_measured_only_when_asked_for() {
    let Some(ctx) = common::gpu() else { return };
    let args = [
        "bench",
        "--op",
        "stats",
        "--sizes",
        "4096",
        "--repeats",
        "1",
        "--json",
    ];
    let out = gradscope(&args);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let report: Value = serde_json::from_slice(&out.stdout).unwrap();
    let software = ctx.adapter.is_software();
    assert_eq!(report["machine"]["adapter"].is_null(), software, "{err}");
    assert_eq!(err.contains("software renderer"), software, "{err}");
    for asked in [["--gpu-only", ""], ["--adapter", ctx.adapter.name.as_str()]] {
        let mut with: Vec<&str> = args.to_vec();
        with.extend(asked.iter().filter(|a| !a.is_empty()));
        let out = gradscope(&with);
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{with:?}: {err}");
        let report: Value = serde_json::from_slice(&out.stdout).unwrap();
        assert!(!report["machine"]["adapter"].is_null(), "{with:?}: {err}");
    }
}

/// Sizes too large for the machine are refused with what they need before anything is
/// allocated (an allocation that large aborts the process), and an adapter asked for by
/// name or index that does not exist is an error, not a silent CPU-only run.
#[test]
fn impossible_sizes_and_missing_adapters_are_refused() {
    let out = gradscope(&[
        "bench",
        "--op",
        "matmul_nn",
        "--sizes",
        "10000000",
        "--cpu-only",
    ]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        !err.contains("panicked") && !err.contains("memory allocation"),
        "{err}"
    );
    assert!(
        err.contains("--op matmul") && err.contains("GiB") && err.contains("--sizes"),
        "{err}"
    );

    let out = gradscope(&["bench", "--op", "stats", "--sizes", "16", "--adapter", "97"]);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(
        err.contains("97") && err.contains("gradscope devices"),
        "{err}"
    );
}
