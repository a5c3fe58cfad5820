//! clipping: a configuration that explodes (a deep ReLU MLP with weights drawn far too
//! large, trained with plain SGD), without clipping, with clipping by the global norm
//! (PyTorch's clip_grad_norm_) and by value (clip_grad_value_). Unclipped, the first
//! steps' gradients are astronomically large and the weights leave the finite range;
//! clipped, every step moves the weights by at most lr × the clip.

use toml::Value;

use super::{axis, common, level, with};
use crate::error::Result;
use crate::study::measure::RunResult;
use crate::study::registry::{Builtin, Context};
use crate::study::sentences::{num, power_of_ten};
use crate::study::spec::{Size, StudySpec};

pub const STUDY: Builtin = Builtin {
    name: "clipping",
    about: "an exploding deep ReLU MLP without clipping, with global-norm and with value \
            clipping",
    build,
    summarize,
};

fn build(size: Size, _: &Context) -> Result<StudySpec> {
    // σ·√(width/2) = 2: each ReLU layer doubles the signal, forward and backward.
    let (depth, width, std) = match size {
        Size::Quick => (8, 32, 0.5),
        Size::Full => (16, 128, 0.25),
    };
    let base = with(
        common(size, (10, 300), (32, 128)),
        &[
            ("model", Value::from("mlp")),
            ("depth", Value::from(depth)),
            ("width", Value::from(width)),
            ("activation", Value::from("relu")),
            ("init", Value::from(format!("normal:{std}"))),
            ("optimizer", Value::from("sgd")),
            ("lr", Value::from(0.1)),
        ],
    );
    Ok(StudySpec {
        name: STUDY.name.into(),
        title: "Gradient clipping".into(),
        question: format!(
            "A ReLU MLP with {depth} hidden layers (width {width}) with weights N(0, {std}²) — each \
             layer multiplies the signal by about {std}·√({width}/2) = 2 — trained by SGD at lr \
             0.1: what do clipping by global norm and by value do to a run that explodes?"
        ),
        base,
        axes: vec![axis(
            "clipping",
            vec![
                level("none", &[]),
                level("global norm 1", &[("clip_norm", Value::from(1.0))]),
                level("value 0.01", &[("clip_value", Value::from(0.01))]),
            ],
        )],
        x_axis: None,
    })
}

fn summarize(_: &StudySpec, runs: &[RunResult]) -> Vec<String> {
    runs.iter()
        .map(|r| {
            let what = match r.level("clipping") {
                Some("none") | None => "Without clipping".to_string(),
                Some(c) => format!("Clipped by {c}"),
            };
            let norm = if r.max_grad_norm.is_finite() {
                format!("the gradient norm peaked at {}", power_of_ten(r.max_grad_norm))
            } else {
                "the gradient norm became infinite".to_string()
            };
            match (&r.error, r.finite) {
                (Some(e), _) => {
                    // The first clause of the error names where; the rest is advice.
                    let origin = e.split(';').next().unwrap_or(e);
                    format!("{what}, the run stopped: {origin}; {norm}.")
                }
                (None, false) => format!("{what}, the loss or gradient became NaN or infinite; {norm}."),
                (None, true) => format!(
                    "{what}, the run stayed finite for all {} steps; {norm} and the loss went from {} to {}.",
                    r.steps,
                    num(r.first_loss),
                    num(r.final_loss)
                ),
            }
        })
        .collect()
}
