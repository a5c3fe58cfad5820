//! initialization: one deep MLP, five ways to draw its weights, three activations. A
//! small fixed σ ignores the layer's fan-in, so each layer scales the signal by roughly
//! σ·√(fan_in)·(the activation's slope) and the backward gradient shrinks geometrically;
//! Glorot, He and LeCun set the variance from the fans, orthogonal keeps every singular
//! value at the gain.

use toml::Value;

use super::{axis, common, level, strings, with};
use crate::error::Result;
use crate::study::measure::RunResult;
use crate::study::registry::{Builtin, Context};
use crate::study::sentences::{list, ratio, spread};
use crate::study::spec::{Axis, Size, StudySpec};

pub const STUDY: Builtin = Builtin {
    name: "initialization",
    about: "small normal, Glorot, He, LeCun and orthogonal init × sigmoid, tanh, relu on one \
            deep MLP",
    build,
    summarize,
};

/// (label, init setting).
pub const INITS: &[(&str, &str)] = &[
    ("small normal", "normal:0.01"),
    ("Glorot", "xavier_normal"),
    ("He", "he_normal"),
    ("LeCun", "lecun_normal"),
    ("orthogonal", "orthogonal"),
];

fn build(size: Size, _: &Context) -> Result<StudySpec> {
    let (depth, width) = match size {
        Size::Quick => (8, 32),
        Size::Full => (20, 128),
    };
    let base = with(
        common(size, (3, 300), (32, 128)),
        &[
            ("model", Value::from("mlp")),
            ("depth", Value::from(depth)),
            ("width", Value::from(width)),
            ("optimizer", Value::from("momentum")),
            ("lr", Value::from(0.01)),
        ],
    );
    Ok(StudySpec {
        name: STUDY.name.into(),
        title: "Initialization".into(),
        question: format!(
            "The same MLP with {depth} hidden layers (width {width}) with a small normal init \
             (σ = 0.01), Glorot/Xavier, He/Kaiming, LeCun and orthogonal weights, each with the \
             gain PyTorch gives the activation (LeCun's σ = 1/√fan_in has none: with ReLU it is He's \
             divided by √2): how evenly does the gradient reach the layers?"
        ),
        base,
        axes: vec![
            Axis::over("activation", strings(&["sigmoid", "tanh", "relu"])),
            axis(
                "init",
                INITS
                    .iter()
                    .map(|(label, init)| level(label, &[("init", Value::from(*init))]))
                    .collect(),
            ),
        ],
        x_axis: None,
    })
}

fn summarize(_: &StudySpec, runs: &[RunResult]) -> Vec<String> {
    let mut out = Vec::new();
    for act in ["sigmoid", "tanh", "relu"] {
        let parts: Vec<String> = INITS
            .iter()
            .filter_map(|(label, _)| {
                let r = runs.iter().find(|r| {
                    r.level("activation") == Some(act) && r.level("init") == Some(label)
                })?;
                Some(format!(
                    "{} with {label} init",
                    ratio(r.init_ratio).replace(" of the last layer's", "")
                ))
            })
            .collect();
        if !parts.is_empty() {
            out.push(format!(
                "With {act}, the first layer's weight gradient is {} (relative to the last \
                 layer's).",
                list(&parts)
            ));
        }
    }
    // In a ReLU net ∇W_l = δ_l·a_{l−1}ᵀ: with weights too small the forward signal shrinks
    // as fast as the backward one, so ∇W stays level and the profile of ∂L/∂a tells.
    for act in ["relu", "tanh"] {
        let find = |label: &str| {
            runs.iter()
                .find(|r| r.level("activation") == Some(act) && r.level("init") == Some(label))
        };
        if let (Some(he), Some(small)) = (find("He"), find("small normal")) {
            out.push(format!(
                "With {act}, the backpropagated gradient ∂L/∂a of the layers (RMS) stays {} under \
                 He init, and is {} under the small normal init.",
                spread(he.init_backprop_spread),
                spread(small.init_backprop_spread).replace("within", "still within")
            ));
        }
    }
    out
}
