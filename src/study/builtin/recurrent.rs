//! recurrent: a plain tanh RNN against an LSTM and a GRU on the adding problem, a task
//! whose answer depends on two values marked anywhere in a long sequence. Back-propagated
//! through time, a tanh RNN's gradient is multiplied at every step by W_hhᵀ·diag(1 − h²),
//! whose norm sits below 1, so ‖∂L/∂h_t‖ falls geometrically towards t = 0 (Bengio et al.
//! 1994). The LSTM's cell state carries it through an additive path scaled by the forget
//! gate (σ(1) ≈ 0.73 per step at initialization with forget bias 1); the GRU's through
//! its update gate z, which starts near 1/2, so at initialization a GRU still halves the
//! carried gradient each step, and only training opens the gate.

use toml::Value;

use super::{axis, common, level, with};
use crate::error::Result;
use crate::study::measure::RunResult;
use crate::study::registry::{Builtin, Context};
use crate::study::sentences::{list, num, power_of_ten};
use crate::study::spec::{Size, StudySpec};

pub const STUDY: Builtin = Builtin {
    name: "recurrent",
    about: "a plain tanh RNN against LSTM and GRU on the adding problem: ‖∂L/∂h_t‖ against time step",
    build,
    summarize,
};

/// The adding problem's mean-squared error when predicting the mean of its target (the
/// sum of two U(0, 1) values has variance 1/6): a model below it has learned something.
pub const ADDING_BASELINE: f64 = 1.0 / 6.0;

/// (level label, `model`, forget-gate bias at initialization).
pub const CELLS: &[(&str, &str, Option<f64>)] = &[
    ("rnn (tanh)", "rnn", None),
    ("lstm", "lstm", Some(1.0)),
    ("gru", "gru", None),
];

/// The sequence length each size runs at.
pub fn length(size: Size) -> i64 {
    match size {
        Size::Quick => 30,
        Size::Full => 100,
    }
}

fn build(size: Size, _: &Context) -> Result<StudySpec> {
    let steps = length(size);
    // Full: minutes on two CPU threads (BENCHMARKS.md), so no GPU is needed to see it.
    let (hidden, samples) = match size {
        Size::Quick => (32, 512),
        Size::Full => (64, 8192),
    };
    let base = with(
        common(size, (20, 3000), (16, 32)),
        &[
            ("task", Value::from("adding")),
            ("seq_len", Value::from(steps)),
            ("hidden_size", Value::from(hidden)),
            ("train_samples", Value::from(samples)),
            ("optimizer", Value::from("adam")),
            ("lr", Value::from(0.001)),
            // Standard practice for recurrent nets (Pascanu et al. 2013), the same for
            // every cell so that only the cell differs.
            ("clip_norm", Value::from(1.0)),
        ],
    );
    Ok(StudySpec {
        name: STUDY.name.into(),
        title: "Recurrent networks: the vanishing gradient through time".into(),
        question: format!(
            "A plain tanh RNN, an LSTM (forget-gate bias 1) and a GRU, each with {hidden} units, \
             on the adding problem at length {steps} (regress the sum of the two marked values \
             among {steps}; predicting the mean gives an MSE of 0.167). How much of the \
             gradient at the last time step reaches the first, ‖∂L/∂h_0‖ / ‖∂L/∂h_{{T−1}}‖, \
             and which cells learn the task?"
        ),
        base,
        axes: vec![axis(
            "cell",
            CELLS
                .iter()
                .map(|(label, model, forget)| {
                    let mut settings = vec![("model", Value::from(*model))];
                    if let Some(f) = forget {
                        settings.push(("forget_bias", Value::from(*f)));
                    }
                    level(label, &settings)
                })
                .collect(),
        )],
        x_axis: None,
    })
}

/// The geometric mean factor per step of a ratio over `length` time steps.
fn per_step(ratio: f64, length: usize) -> f64 {
    ratio.powf(1.0 / length.saturating_sub(1).max(1) as f64)
}

fn summarize(_: &StudySpec, runs: &[RunResult]) -> Vec<String> {
    let mut out = Vec::new();
    let length = runs
        .iter()
        .map(|r| r.init_hidden_norms.len())
        .max()
        .unwrap_or(0);
    let shares: Vec<String> = runs
        .iter()
        .filter(|r| r.init_hidden_ratio.is_finite() && r.init_hidden_ratio > 0.0)
        .map(|r| {
            format!(
                "{} with {} (a factor {} per step)",
                power_of_ten(r.init_hidden_ratio),
                r.label(),
                num(per_step(r.init_hidden_ratio, r.init_hidden_norms.len()))
            )
        })
        .collect();
    if !shares.is_empty() {
        out.push(format!(
            "At initialization, the gradient reaching the first of {length} time steps, \
             ‖∂L/∂h_0‖, is {} of the gradient at the last.",
            list(&shares)
        ));
    }
    for r in runs {
        let mse = r.val_loss.map_or_else(
            || "no validation loss".to_string(),
            |l| {
                let verdict = if l < 0.5 * ADDING_BASELINE {
                    "learned the task"
                } else {
                    "not learned: no better than predicting the mean"
                };
                format!(
                    "validation MSE {} against the baseline {} ({verdict})",
                    num(l),
                    num(ADDING_BASELINE)
                )
            },
        );
        let end = if r.end_hidden_ratio.is_finite() && r.end_hidden_ratio > 0.0 {
            format!(
                ", {} at the last logged step",
                power_of_ten(r.end_hidden_ratio)
            )
        } else {
            String::new()
        };
        out.push(format!(
            "{}: ‖∂L/∂h_0‖/‖∂L/∂h_T‖ {} at initialization{end}; after {} steps, {mse}.",
            r.label(),
            if r.init_hidden_ratio.is_finite() {
                power_of_ten(r.init_hidden_ratio)
            } else {
                "not finite".into()
            },
            r.steps
        ));
    }
    out
}
