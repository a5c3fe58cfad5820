//! `gradscope study`: the quick version of every built-in study, on the bundled data with
//! the CPU executor, reproduces the direction of its classic result; the report renders and
//! references only files that exist; a stopped study continues where it left off, sharing
//! one data load and one device; unknown axes are refused with the axis named.

mod common;

use std::path::Path;

use gradscope::Error;
use gradscope::study::{self, Context, RunOptions, RunResult, RunStatus, Size, Study, StudySpec};
use gradscope::train::Silent;

/// Every run on the CPU executor, whatever the machine has.
fn cpu() -> toml::Table {
    let mut t = toml::Table::new();
    t.insert("device".into(), toml::Value::from("cpu"));
    t
}

fn run_builtin(name: &str, dir: &Path) -> (Vec<RunResult>, study::Outcome) {
    let ctx = Context {
        dir: dir.to_path_buf(),
        data: None,
    };
    let s = Study::builtin(name, Size::Quick, &ctx).unwrap();
    let outcome = study::run(&s, dir, &cpu(), &RunOptions::default(), &mut Silent).unwrap();
    assert_eq!(
        outcome.results.len(),
        outcome.plans.len(),
        "{name}: every run finished"
    );
    check_report(&outcome);
    let runs = outcome.results.iter().map(|(r, _)| r.clone()).collect();
    (runs, outcome)
}

/// Every `href="…"` and `src="…"` of the page exists, and the page says something.
fn check_report(outcome: &study::Outcome) {
    let html = std::fs::read_to_string(&outcome.report.html).unwrap();
    let base = outcome.report.html.parent().unwrap();
    let mut refs = 0;
    for attr in ["href=\"", "src=\""] {
        let mut rest = html.as_str();
        while let Some(i) = rest.find(attr) {
            rest = &rest[i + attr.len()..];
            let end = rest.find('"').unwrap();
            let target = &rest[..end];
            assert!(
                base.join(target).is_file(),
                "{} references {target}, which does not exist",
                outcome.report.html.display()
            );
            refs += 1;
            rest = &rest[end..];
        }
    }
    assert!(refs > 0);
    assert!(!outcome.summary.is_empty());
    for line in &outcome.summary {
        assert!(
            html.contains(&line.replace('\'', "&#39;")),
            "summary line missing: {line}"
        );
    }
    for f in &outcome.report.figures {
        assert!(std::fs::metadata(&f.saved.png).unwrap().len() > 1000);
        assert!(std::fs::metadata(&f.saved.svg).unwrap().len() > 1000);
    }
}

fn find<'a>(runs: &'a [RunResult], levels: &[(&str, &str)]) -> &'a RunResult {
    runs.iter()
        .find(|r| levels.iter().all(|(a, l)| r.level(a) == Some(l)))
        .unwrap_or_else(|| panic!("no run with {levels:?}"))
}

#[test]
fn saturating_activations_vanish_with_depth_and_the_others_do_not() {
    let tmp = tempfile::tempdir().unwrap();
    let (runs, outcome) = run_builtin("depth-and-activation", tmp.path());
    let ratio =
        |act: &str, depth: &str| find(&runs, &[("activation", act), ("depth", depth)]).init_ratio;
    // The sigmoid's slope is at most 1/4: its first layer's share falls by decades with
    // every few layers added.
    let (shallow, deep) = (ratio("sigmoid", "2"), ratio("sigmoid", "12"));
    assert!(
        deep < 1e-4 && deep < shallow * 1e-3,
        "sigmoid: ratio {shallow:e} at depth 2, {deep:e} at depth 12"
    );
    // Every other activation, with the gain PyTorch gives it, holds within a factor 5 at
    // every depth. This includes tanh: its gain of 5/3 offsets its slope below 1, so it does
    // not vanish at initialization (it does with weights too small, see the initialization
    // study, and it saturates when its inputs grow).
    for act in ["tanh", "relu", "leaky_relu", "elu", "selu", "gelu"] {
        for depth in ["2", "6", "12"] {
            let r = ratio(act, depth);
            assert!(
                (0.2..=5.0).contains(&r),
                "{act}: ratio {r:e} at depth {depth} should stay within a factor 5 of 1"
            );
        }
    }
    assert!(
        outcome.summary[0].contains("fell below 0.1 with sigmoid"),
        "{}",
        outcome.summary[0]
    );
    assert!(
        outcome
            .report
            .figures
            .iter()
            .any(|f| f.saved.stem == "ratio_vs_x")
    );
}

#[test]
fn he_init_keeps_relu_gradients_level_and_a_small_init_does_not() {
    let tmp = tempfile::tempdir().unwrap();
    let (runs, _) = run_builtin("initialization", tmp.path());
    let he = find(&runs, &[("activation", "relu"), ("init", "He")]);
    let small = find(&runs, &[("activation", "relu"), ("init", "small normal")]);
    assert!(
        he.init_backprop_spread < 4.0,
        "He: ‖∂L/∂a‖ spread {} across layers",
        he.init_backprop_spread
    );
    assert!(
        small.init_backprop_spread > 1e3,
        "small normal: ‖∂L/∂a‖ spread {} across layers",
        small.init_backprop_spread
    );
    let sig = find(
        &runs,
        &[("activation", "sigmoid"), ("init", "small normal")],
    );
    assert!(
        sig.init_ratio < 1e-3,
        "sigmoid, small normal: ratio {}",
        sig.init_ratio
    );
}

#[test]
fn batchnorm_brings_the_first_layer_gradient_back() {
    let tmp = tempfile::tempdir().unwrap();
    let (runs, _) = run_builtin("normalization", tmp.path());
    let none = find(&runs, &[("normalization", "none")]).init_ratio;
    let bn = find(&runs, &[("normalization", "BatchNorm")]).init_ratio;
    let ln = find(&runs, &[("normalization", "LayerNorm")]).init_ratio;
    assert!(none < 1e-3, "without normalization: ratio {none:e}");
    assert!((0.1..=10.0).contains(&bn), "BatchNorm: ratio {bn:e}");
    // LayerNorm helps, far less than BatchNorm (see normalization.rs for why).
    assert!(
        ln > none * 10.0 && ln < bn,
        "LayerNorm: ratio {ln:e} against {none:e} without"
    );
}

#[test]
fn clipping_keeps_the_exploding_configuration_finite() {
    let tmp = tempfile::tempdir().unwrap();
    let (runs, _) = run_builtin("clipping", tmp.path());
    let none = find(&runs, &[("clipping", "none")]);
    assert!(
        !none.finite || none.max_grad_norm > 1e6,
        "the unclipped run should explode: finite {}, max ‖g‖ {:e}",
        none.finite,
        none.max_grad_norm
    );
    for c in ["global norm 1", "value 0.01"] {
        let r = find(&runs, &[("clipping", c)]);
        assert!(
            r.finite && r.error.is_none(),
            "{c}: not finite ({:?})",
            r.error
        );
        assert_eq!(r.steps, none.steps.max(r.steps), "{c}: ran every step");
        assert!(r.final_loss.is_finite());
    }
}

#[test]
fn shortcuts_keep_a_deep_conv_net_first_layer_gradient_near_the_last() {
    let tmp = tempfile::tempdir().unwrap();
    let (runs, outcome) = run_builtin("shortcuts", tmp.path());
    let deep = find(&runs, &[("model", "resnet20")]);
    assert!(
        (1.0 / 3.0..=3.0).contains(&deep.init_ratio),
        "resnet20: ratio {:e}",
        deep.init_ratio
    );
    assert!(runs.iter().all(|r| r.finite && r.steps == 2));
    let html = std::fs::read_to_string(&outcome.report.html).unwrap();
    assert!(
        html.contains("Fashion-MNIST"),
        "the page says which data it used"
    );
}

#[test]
fn every_optimizer_trains_the_deep_net() {
    let tmp = tempfile::tempdir().unwrap();
    let (runs, _) = run_builtin("optimizers", tmp.path());
    assert_eq!(runs.len(), 5);
    for r in &runs {
        assert!(r.finite, "{}: not finite", r.label());
        assert!(
            r.final_loss < r.first_loss,
            "{}: loss {} → {}",
            r.label(),
            r.first_loss,
            r.final_loss
        );
        assert!(r.ms_per_step.is_some_and(|t| t > 0.0));
    }
}

const SMALL: &str = r#"
name = "small"
x_axis = "depth"
[base]
width = 8
max_steps = 4
epochs = 1
batch_size = 16
checkpoint_every = 2
tensorboard = false
[[axis]]
key = "depth"
values = [1, 3]
[[axis]]
name = "act"
levels = [{ label = "sig", activation = "sigmoid" }, { label = "relu", activation = "relu", init = "he-normal" }]
"#;

#[test]
fn a_plain_rnn_gradient_vanishes_through_time_and_lstm_and_gru_carry_it() {
    let tmp = tempfile::tempdir().unwrap();
    let (runs, outcome) = run_builtin("recurrent", tmp.path());
    let length = study::builtin::recurrent::length(Size::Quick) as usize;
    for r in &runs {
        assert_eq!(
            r.init_hidden_norms.len(),
            length,
            "{}: a norm per time step",
            r.label()
        );
        assert!(
            r.init_hidden_norms
                .iter()
                .all(|v| v.is_finite() && *v > 0.0)
        );
        assert!(
            r.finite && r.regression && r.val_loss.is_some(),
            "{}",
            r.label()
        );
        assert!(r.val_accuracy.is_none(), "a regression reports no accuracy");
    }
    let rnn = find(&runs, &[("cell", "rnn (tanh)")]);
    let lstm = find(&runs, &[("cell", "lstm")]);
    let gru = find(&runs, &[("cell", "gru")]);
    // A tanh RNN multiplies the gradient by W_hhᵀ·diag(1 − h²) at each of the 29 steps
    // back (measured: 10^-7.3 at t = 0). The LSTM's cell path carries it through its
    // forget gate, σ(1) ≈ 0.73 at initialization (10^-3.2). The GRU's update gate starts
    // near 1/2, so at initialization it halves what it carries per step and stays far
    // closer to the plain RNN (10^-5.9); the assertions hold the measured order.
    assert!(
        rnn.init_hidden_ratio < 1e-5,
        "rnn: {:e}",
        rnn.init_hidden_ratio
    );
    for (gated, factor) in [(lstm, 1e3), (gru, 5.0)] {
        assert!(
            gated.init_hidden_ratio > factor * rnn.init_hidden_ratio,
            "{}: {:e} against the rnn's {:e}",
            gated.label(),
            gated.init_hidden_ratio,
            rnn.init_hidden_ratio
        );
    }
    assert!(lstm.init_hidden_ratio > 100.0 * gru.init_hidden_ratio);
    // The recurrent layer's two sides are weight layers of the profiles.
    assert_eq!(rnn.layers, ["rnn.l0.ih", "rnn.l0.hh", "fc"]);
    let stems: Vec<&str> = outcome
        .report
        .figures
        .iter()
        .map(|f| f.saved.stem.as_str())
        .collect();
    assert!(stems.contains(&"hidden_time_init") && stems.contains(&"hidden_time_end"));
    assert!(
        !stems.contains(&"accuracy"),
        "no accuracy curve for a regression"
    );
    assert!(
        outcome.summary[0].contains("‖∂L/∂h_0‖"),
        "{:?}",
        outcome.summary
    );
}

#[test]
fn a_stopped_study_continues_skipping_finished_runs() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let s = Study {
        spec: StudySpec::from_toml(SMALL, Path::new("small.toml")).unwrap(),
        summarize: study::generic::summarize,
    };
    let stop = RunOptions {
        stop_after: Some(2),
    };
    let first = study::run(&s, dir, &cpu(), &stop, &mut Silent).unwrap();
    assert_eq!(first.plans.len(), 4);
    assert_eq!(first.results.len(), 2);
    assert_eq!(
        (first.data_loads, first.device_opens),
        (1, 1),
        "shared data and device"
    );
    check_report(&first);

    let done = study::run(&s, dir, &cpu(), &RunOptions::default(), &mut Silent).unwrap();
    let statuses: Vec<&RunStatus> = done.results.iter().map(|(_, st)| st).collect();
    assert_eq!(
        statuses,
        [
            &RunStatus::Skipped,
            &RunStatus::Skipped,
            &RunStatus::Trained,
            &RunStatus::Trained
        ]
    );
    // Interrupt the third run after its step-2 checkpoint: no summary, no later checkpoint.
    let finished = done.results[2].0.clone();
    let third = done.plans[2].config.run_dir.clone().unwrap();
    std::fs::remove_file(third.join("summary.json")).unwrap();
    std::fs::remove_file(third.join("checkpoints/step-000004.safetensors")).unwrap();
    assert!(third.join("checkpoints/step-000002.safetensors").is_file());
    let again = study::run(&s, dir, &cpu(), &RunOptions::default(), &mut Silent).unwrap();
    assert_eq!(again.results[2].1, RunStatus::Resumed);
    assert_eq!(
        again.results[2].0.losses, finished.losses,
        "resumed bit for bit"
    );
    assert!(
        again
            .results
            .iter()
            .enumerate()
            .all(|(i, (_, st))| i == 2 || *st == RunStatus::Skipped)
    );
    // Nothing left to train: the runs are read back without opening a device.
    let last = study::run(&s, dir, &cpu(), &RunOptions::default(), &mut Silent).unwrap();
    assert_eq!((last.data_loads, last.device_opens), (1, 0));
    assert!(last.results.iter().all(|(_, st)| *st == RunStatus::Skipped));
    // Each run directory is an ordinary run directory.
    for p in &again.plans {
        let d = p.config.run_dir.as_ref().unwrap();
        for f in [
            "config.toml",
            "metrics.jsonl",
            "summary.json",
            "report/report.html",
        ] {
            assert!(d.join(f).is_file(), "{} lacks {f}", d.display());
        }
        assert!(d.join("checkpoints").is_dir());
    }
    assert!(dir.join("study.json").is_file());
}

#[test]
fn unknown_axes_and_reserved_keys_are_refused() {
    let bad = SMALL
        .replace("key = \"depth\"", "key = \"depht\"")
        .replace("x_axis = \"depth\"\n", "");
    let s = Study {
        spec: StudySpec::from_toml(&bad, Path::new("bad.toml")).unwrap(),
        summarize: study::generic::summarize,
    };
    let tmp = tempfile::tempdir().unwrap();
    let err = study::run(&s, tmp.path(), &cpu(), &RunOptions::default(), &mut Silent)
        .err()
        .unwrap();
    let msg = err.to_string();
    assert!(matches!(err, Error::Config(_)));
    assert!(
        msg.contains("axis `depht`") && msg.contains("not a setting of `gradscope train`"),
        "{msg}"
    );
    let reserved = SMALL.replace("width = 8", "width = 8\nrun_dir = \"x\"");
    let s = Study {
        spec: StudySpec::from_toml(&reserved, Path::new("r.toml")).unwrap(),
        summarize: study::generic::summarize,
    };
    let msg = study::run(&s, tmp.path(), &cpu(), &RunOptions::default(), &mut Silent)
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("`run_dir` is chosen by the study"), "{msg}");
    let wrong_type = SMALL.replace("values = [1, 3]", "values = [\"deep\"]");
    let s = Study {
        spec: StudySpec::from_toml(&wrong_type, Path::new("w.toml")).unwrap(),
        summarize: study::generic::summarize,
    };
    let msg = study::run(&s, tmp.path(), &cpu(), &RunOptions::default(), &mut Silent)
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("bad value for `depth`"), "{msg}");
    let no_axes = "name = \"x\"\n";
    let msg = StudySpec::from_toml(no_axes, Path::new("n.toml"))
        .err()
        .unwrap()
        .to_string();
    assert!(msg.contains("at least one [[axis]]"), "{msg}");
}

#[test]
fn a_study_on_the_gpu_opens_one_device_and_agrees_with_the_cpu() {
    // Skips where no adapter exists (fails instead under REQUIRE_GPU=1).
    if common::gpu().is_none() {
        return;
    }
    let small = SMALL.replace("checkpoint_every = 2\n", "");
    let s = Study {
        spec: StudySpec::from_toml(&small, Path::new("small.toml")).unwrap(),
        summarize: study::generic::summarize,
    };
    let tmp = tempfile::tempdir().unwrap();
    let mut gpu = toml::Table::new();
    gpu.insert("device".into(), toml::Value::from("gpu"));
    let on_gpu = study::run(
        &s,
        &tmp.path().join("gpu"),
        &gpu,
        &RunOptions::default(),
        &mut Silent,
    )
    .unwrap();
    let on_cpu = study::run(
        &s,
        &tmp.path().join("cpu"),
        &cpu(),
        &RunOptions::default(),
        &mut Silent,
    )
    .unwrap();
    assert_eq!((on_gpu.data_loads, on_gpu.device_opens), (1, 1));
    for ((g, _), (c, _)) in on_gpu.results.iter().zip(&on_cpu.results) {
        let summary = std::fs::read_to_string(g.dir.join("summary.json")).unwrap();
        assert!(summary.contains("\"executor\": \"gpu:"), "{summary}");
        // The same step on both executors: equal to f32 rounding.
        for (a, b) in g.init_grad_rms.iter().zip(&c.init_grad_rms) {
            assert!(
                (a - b).abs() <= 1e-4 * b.abs(),
                "{}: {a:e} on the GPU, {b:e} on the CPU",
                g.id
            );
        }
        assert!((g.first_loss - c.first_loss).abs() < 1e-4, "{}", g.id);
    }
}
