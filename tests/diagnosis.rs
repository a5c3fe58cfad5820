//! Diagnosis on networks known to show each pathology: the right finding on the right
//! layers, and none on healthy networks. Runs on the CPU executor (the statistics records
//! are identical on the GPU, tests/step_gpu_vs_cpu.rs) with seeded random batches.

mod common;

use gradscope::config::NonFinitePolicy;
use gradscope::cpu::executor::CpuExecutor;
use gradscope::diagnosis::{
    Diagnoser, DiagnosisConfig, Finding, FindingKind, NonFiniteOrigin, Pass, Watch, nonfinite,
};
use gradscope::executor::{Executor, StatsLevel};
use gradscope::init::Init;
use gradscope::model::{LossKind, ModelSpec};
use gradscope::ops::{Activation, OptimizerKind, OptimizerParams, StepScalars};
use gradscope::plan::{Plan, TensorKind, compile};
use gradscope::stats::{layer_stats, total_grad_norm};
use gradscope::train::initialize;

const INPUT: usize = 16;
const CLASSES: usize = 4;
const BATCH: usize = 32;

fn plan(hidden: &[(usize, Activation)], init: Init, loss: LossKind, opt: OptimizerKind) -> Plan {
    let model = ModelSpec::mlp_layers(INPUT, hidden, CLASSES, init, loss).unwrap();
    compile(&model, BATCH, OptimizerParams::new(opt)).unwrap()
}

struct Outcome {
    findings: Vec<Finding>,
    first_nonfinite: Option<NonFiniteOrigin>,
    layer_names: Vec<String>,
}

/// Trains `steps` steps with full statistics under the `continue` policy, after `setup`
/// has changed the initialized parameters.
fn run(
    p: Plan,
    lr: f32,
    steps: u64,
    config: DiagnosisConfig,
    setup: impl FnOnce(&mut CpuExecutor<f32>),
) -> Outcome {
    let layer_names = p.layers.iter().map(|l| l.name.clone()).collect();
    let mut exec = CpuExecutor::<f32>::new(p.clone());
    initialize(&mut exec, 3).unwrap();
    setup(&mut exec);
    let mut watch = Watch::new(&p, NonFinitePolicy::Continue, Diagnoser::new(config));
    for step in 1..=steps {
        let inputs = common::random_vec(1000 + step, BATCH * INPUT, -2.0, 2.0);
        let labels = common::random_labels(2000 + step, BATCH, CLASSES as u32);
        exec.load_batch(&inputs, &labels).unwrap();
        let scalars = StepScalars { lr, t: step as u32 };
        exec.train_step(step, scalars, StatsLevel::Full).unwrap();
        for r in exec.finished(true).unwrap() {
            let layers = layer_stats(&p, &r);
            let norm = total_grad_norm(&p, &r);
            watch.examine(&p, &r, Some(&layers), norm).unwrap();
        }
    }
    Outcome {
        findings: watch.diagnoser.findings().to_vec(),
        first_nonfinite: watch.first_nonfinite.clone(),
        layer_names,
    }
}

fn kinds(o: &Outcome) -> Vec<FindingKind> {
    o.findings.iter().map(|f| f.kind).collect()
}

fn find(o: &Outcome, kind: FindingKind) -> &Finding {
    o.findings
        .iter()
        .find(|f| f.kind == kind)
        .unwrap_or_else(|| {
            panic!(
                "no {kind:?} finding; got {:#?}",
                o.findings.iter().map(|f| f.render()).collect::<Vec<_>>()
            )
        })
}

#[test]
fn deep_sigmoid_small_init_vanishes_in_early_layers() {
    let hidden = vec![(32, Activation::Sigmoid); 8];
    let p = plan(
        &hidden,
        Init::Normal { std: 0.05 },
        LossKind::Xent,
        OptimizerKind::Sgd,
    );
    let o = run(p, 0.1, 5, DiagnosisConfig::default(), |_| {});
    let f = find(&o, FindingKind::VanishingGradients);
    assert!(f.layers.contains(&o.layer_names[0]), "{}", f.render());
    assert!(!f.layers.contains(&"output".to_string()), "{}", f.render());
    assert!(!f.remedies.is_empty() && !f.evidence.is_empty());
    assert!(!kinds(&o).contains(&FindingKind::ExplodingGradients));
}

#[test]
fn relu_large_negative_bias_kills_units_from_that_layer_on() {
    let hidden = vec![(24, Activation::Relu); 4];
    let p = plan(&hidden, Init::HeNormal, LossKind::Xent, OptimizerKind::Adam);
    let bias = p.param("layers.1.bias").unwrap().value;
    let o = run(p, 1e-3, 5, DiagnosisConfig::default(), |e| {
        e.write(bias, &[-10.0; 24]).unwrap();
    });
    let f = find(&o, FindingKind::DeadUnits);
    assert!(f.layers.contains(&"hidden2".to_string()), "{}", f.render());
    assert!(!f.layers.contains(&"hidden1".to_string()), "{}", f.render());
}

#[test]
fn tanh_large_init_saturates() {
    let hidden = vec![(32, Activation::Tanh); 3];
    let p = plan(
        &hidden,
        Init::Normal { std: 1.0 },
        LossKind::Xent,
        OptimizerKind::Sgd,
    );
    let o = run(p, 1e-3, 5, DiagnosisConfig::default(), |_| {});
    let f = find(&o, FindingKind::Saturation);
    // Layer 1 sees the standardized input (pre-activation std ≈ 4.6); later ones ±1 inputs.
    for name in ["hidden1", "hidden2", "hidden3"] {
        assert!(f.layers.contains(&name.to_string()), "{}", f.render());
    }
}

#[test]
fn learning_rate_far_too_high_and_too_low() {
    let hidden = vec![(32, Activation::Relu); 2];
    let p = plan(&hidden, Init::HeNormal, LossKind::Xent, OptimizerKind::Adam);
    let o = run(p.clone(), 0.3, 5, DiagnosisConfig::default(), |_| {});
    let f = find(&o, FindingKind::LearningRateTooHigh);
    assert!(f.layers.contains(&"hidden1".to_string()), "{}", f.render());
    let p = plan(&hidden, Init::HeNormal, LossKind::Xent, OptimizerKind::Sgd);
    let o = run(p, 1e-8, 5, DiagnosisConfig::default(), |_| {});
    let f = find(&o, FindingKind::LearningRateTooLow);
    assert_eq!(f.layers, o.layer_names, "{}", f.render());
}

/// A deep ReLU network with a large init (σ = 0.7 on fan-in 32: each layer multiplies the
/// backward signal by about 0.7·√(32/2) ≈ 2.8), trained gently: the output gradient grows
/// towards the input by orders of magnitude from the first step, while nothing overflows.
#[test]
fn deep_relu_large_init_explodes_across_depth() {
    let hidden = vec![(32, Activation::Relu); 9];
    let p = plan(
        &hidden,
        Init::Normal { std: 0.7 },
        LossKind::Xent,
        OptimizerKind::Sgd,
    );
    let o = run(p, 1e-12, 4, DiagnosisConfig::default(), |_| {});
    let f = find(&o, FindingKind::ExplodingGradients);
    assert!(f.layers.contains(&"hidden1".to_string()), "{}", f.render());
    assert!(!f.layers.contains(&"output".to_string()), "{}", f.render());
    assert!(o.first_nonfinite.is_none());
    assert!(
        !kinds(&o).contains(&FindingKind::VanishingGradients),
        "{:?}",
        kinds(&o)
    );
}

/// A deep linear network with a large init under SGD with a large step: the gradient norm
/// grows geometrically step over step until it overflows.
#[test]
fn large_init_large_lr_explodes_before_overflowing() {
    let hidden = vec![(32, Activation::Identity); 4];
    let p = plan(
        &hidden,
        Init::Normal { std: 0.3 },
        LossKind::Mse,
        OptimizerKind::Sgd,
    );
    let cfg = DiagnosisConfig::default();
    let o = run(p, 0.02, 30, cfg, |_| {});
    let f = find(&o, FindingKind::ExplodingGradients);
    assert!(!f.layers.is_empty(), "{}", f.render());
    let first_nonfinite = o.first_nonfinite.as_ref().map_or(u64::MAX, |n| n.step);
    assert!(
        f.step < first_nonfinite,
        "{} vs {first_nonfinite}",
        f.render()
    );
}

#[test]
fn huge_learning_rate_gives_nonfinite_with_origin() {
    let hidden = vec![(32, Activation::Relu); 3];
    let p = plan(&hidden, Init::HeNormal, LossKind::Mse, OptimizerKind::Sgd);
    let o = run(p, 1e6, 6, DiagnosisConfig::default(), |_| {});
    let f = find(&o, FindingKind::NonFinite);
    let origin = o.first_nonfinite.as_ref().expect("an origin");
    assert_eq!(f.step, origin.step);
    assert!(origin.complete);
}

#[test]
fn healthy_relu_he_raises_nothing() {
    let hidden = vec![(32, Activation::Relu); 6];
    let p = plan(&hidden, Init::HeNormal, LossKind::Xent, OptimizerKind::Adam);
    let o = run(p, 1e-3, 12, DiagnosisConfig::default(), |_| {});
    assert!(
        o.findings.is_empty(),
        "{:#?}",
        o.findings.iter().map(|f| f.render()).collect::<Vec<_>>()
    );
}

/// A healthy residual network with BatchNorm (resnet-8 on 1×4×4 inputs, He init, Adam)
/// raises nothing either: normalization and shortcuts are the remedies, not findings.
#[test]
fn healthy_resnet_with_batchnorm_raises_nothing() {
    let model = gradscope::model::zoo::cifar_resnet(
        &[1, 4, 4],
        CLASSES,
        8,
        true,
        true,
        Init::HeNormal,
        LossKind::Xent,
    )
    .unwrap();
    let p = compile(&model, BATCH, OptimizerParams::new(OptimizerKind::Adam)).unwrap();
    let o = run(p, 1e-3, 12, DiagnosisConfig::default(), |_| {});
    assert!(
        o.findings.is_empty(),
        "{:#?}",
        o.findings.iter().map(|f| f.render()).collect::<Vec<_>>()
    );
}

/// A planted overflow in the forward pass of hidden3: its weights and bias at f32::MAX
/// make its pre-activation +Inf (the inputs to it are ReLU outputs, ≥ 0), while every
/// parameter stays finite. The origin is that layer's output, forward; the gradients of
/// every layer are non-finite too, but they come later in execution order.
#[test]
fn planted_forward_overflow_is_traced_to_its_layer() {
    let hidden = vec![(16, Activation::Relu); 4];
    let p = plan(&hidden, Init::HeNormal, LossKind::Xent, OptimizerKind::Sgd);
    let w = p.param("layers.2.weight").unwrap().value;
    let b = p.param("layers.2.bias").unwrap().value;
    let o = run(p, 1e-3, 2, DiagnosisConfig::default(), |e| {
        e.write(w, &[3e38; 16 * 16]).unwrap();
        e.write(b, &[f32::MAX; 16]).unwrap();
    });
    let origin = o.first_nonfinite.expect("an origin");
    assert_eq!(
        (
            origin.step,
            origin.layer_name.as_str(),
            origin.pass,
            origin.tensor.as_str()
        ),
        (1, "hidden3", Pass::Forward, "output"),
        "{}",
        origin.describe()
    );
}

/// The ordering alone, on a real plan: records marked non-finite as a NaN born in the
/// backward kernel of hidden2's output gradient would leave them (that gradient, then every
/// gradient computed after it: the weight gradients of hidden2 and hidden1, hidden1's output
/// gradient). The origin is hidden2's output gradient, not the layers downstream of it.
#[test]
fn planted_backward_nan_is_traced_in_execution_order() {
    let hidden = vec![(8, Activation::Tanh); 3];
    let p = plan(
        &hidden,
        Init::XavierNormal,
        LossKind::Xent,
        OptimizerKind::Sgd,
    );
    let mut exec = CpuExecutor::<f32>::new(p.clone());
    initialize(&mut exec, 1).unwrap();
    exec.load_batch(
        &common::random_vec(1, BATCH * INPUT, -1.0, 1.0),
        &common::random_labels(2, BATCH, CLASSES as u32),
    )
    .unwrap();
    exec.train_step(7, StepScalars { lr: 0.01, t: 1 }, StatsLevel::Full)
        .unwrap();
    let mut r = exec.finished(true).unwrap().remove(0);
    assert!(nonfinite::trace(&p, &nonfinite::production_order(&p), &r).is_none());
    let poisoned = |layer: usize, kind: TensorKind| match kind {
        TensorKind::OutputGrad => layer <= 1,
        TensorKind::WeightGrad | TensorKind::BiasGrad => layer <= 1,
        _ => false,
    };
    for (job, rec) in p.stats_jobs.iter().zip(r.records.iter_mut()) {
        if poisoned(job.layer, job.kind) {
            rec.nan = 3;
        }
    }
    let origin = nonfinite::trace(&p, &nonfinite::production_order(&p), &r).unwrap();
    assert_eq!(
        (
            origin.step,
            origin.layer_name.as_str(),
            origin.pass,
            origin.tensor.as_str()
        ),
        (7, "hidden2", Pass::Backward, "output_grad"),
        "{}",
        origin.describe()
    );
    // Only hidden1's weight gradient: the origin is that gradient.
    for (job, rec) in p.stats_jobs.iter().zip(r.records.iter_mut()) {
        rec.nan = (job.layer == 0 && job.kind == TensorKind::WeightGrad) as u32;
    }
    let origin = nonfinite::trace(&p, &nonfinite::production_order(&p), &r).unwrap();
    assert_eq!(
        (
            origin.layer_name.as_str(),
            origin.pass,
            origin.tensor.as_str()
        ),
        ("hidden1", Pass::Backward, "weight_grad")
    );
}

#[test]
fn thresholds_are_validated() {
    let mut c = DiagnosisConfig::default();
    assert!(c.validate().is_ok());
    c.vanishing_ratio = 0.0;
    assert!(c.validate().is_err());
    let c = DiagnosisConfig {
        patience: 5,
        window: 2,
        ..Default::default()
    };
    assert!(c.validate().is_err());
}

/// A NaN/Inf born in a real backward kernel, with the forward pass finite: hidden2's unit 0
/// is dead (bias −1e30, so its ReLU output is exactly 0 for every sample), and hidden3's
/// weights from that unit are 3e38. Forward, 3e38·0 = 0 keeps everything finite; backward,
/// the input-gradient matmul of hidden3 multiplies those weights by output gradients of
/// order 10 (the read-out weights are ±1e3), which overflows to ±Inf in hidden2's output
/// gradient. The origin must be exactly there, not in the gradients computed after it.
#[test]
fn planted_backward_overflow_is_traced_to_its_kernel() {
    let hidden = vec![(16, Activation::Relu); 3];
    let p = plan(&hidden, Init::HeNormal, LossKind::Xent, OptimizerKind::Sgd);
    let b2 = p.param("layers.1.bias").unwrap().value;
    let w3 = p.param("layers.2.weight").unwrap().value;
    let w4 = p.param("layers.3.weight").unwrap().value;
    let o = run(p, 1e-3, 1, DiagnosisConfig::default(), |e| {
        let mut bias = e.read(b2).unwrap();
        bias[0] = -1e30;
        e.write(b2, &bias).unwrap();
        let mut w = e.read(w3).unwrap();
        for out in 0..16 {
            w[out * 16] = 3e38;
        }
        e.write(w3, &w).unwrap();
        let signs = common::random_vec(9, CLASSES * 16, -1.0, 1.0);
        let readout: Vec<f32> = signs.iter().map(|s| 1e3 * s.signum()).collect();
        e.write(w4, &readout).unwrap();
    });
    let origin = o.first_nonfinite.expect("an origin");
    assert_eq!(
        (
            origin.step,
            origin.layer_name.as_str(),
            origin.pass,
            origin.tensor.as_str()
        ),
        (1, "hidden2", Pass::Backward, "output_grad"),
        "{}",
        origin.describe()
    );
}
