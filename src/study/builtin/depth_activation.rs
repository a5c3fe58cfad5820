//! depth-and-activation: MLPs of growing depth with each activation, every one initialized
//! as PyTorch recommends for it (He-style normal with the activation's gain), so the only
//! difference left is the activation's derivative. A sigmoid's is at most 1/4, so its
//! backward signal shrinks by a roughly constant factor per layer; the ReLU family passes
//! it on unchanged where units are active.

use toml::Value;

use super::{common, ints, strings, with};
use crate::error::Result;
use crate::study::measure::RunResult;
use crate::study::registry::{Builtin, Context};
use crate::study::sentences::{list, ratio};
use crate::study::spec::{Axis, Size, StudySpec};

pub const STUDY: Builtin = Builtin {
    name: "depth-and-activation",
    about: "MLPs of 2 to 20 hidden layers × sigmoid, tanh, relu, leaky_relu, elu, selu, gelu: \
            first/last layer gradient ratio against depth",
    build,
    summarize,
};

pub const ACTIVATIONS: &[&str] = &[
    "sigmoid",
    "tanh",
    "relu",
    "leaky_relu",
    "elu",
    "selu",
    "gelu",
];

fn build(size: Size, _: &Context) -> Result<StudySpec> {
    let (depths, width): (&[i64], i64) = match size {
        Size::Quick => (&[2, 6, 12], 32),
        Size::Full => (&[2, 5, 10, 15, 20], 128),
    };
    let base = with(
        common(size, (3, 300), (32, 128)),
        &[
            ("model", Value::from("mlp")),
            ("width", Value::from(width)),
            ("init", Value::from("he_normal")),
            ("optimizer", Value::from("momentum")),
            ("lr", Value::from(0.01)),
        ],
    );
    Ok(StudySpec {
        name: STUDY.name.into(),
        title: "Depth and activation".into(),
        question: "How does the gradient reaching the first layer compare with the last \
                   layer's as the network gets deeper, for each activation? Every net is \
                   initialized with a normal of σ = gain/√fan_in, the gain PyTorch gives the \
                   activation (1 for sigmoid, ELU and GELU, 5/3 for tanh, √2 for ReLU)."
            .into(),
        base,
        axes: vec![
            Axis::over("depth", ints(depths)),
            Axis::over("activation", strings(ACTIVATIONS)),
        ],
        x_axis: Some("depth".into()),
    })
}

/// A ratio below this at the greatest depth is called vanishing.
pub const VANISHED: f64 = 0.1;

fn summarize(_: &StudySpec, runs: &[RunResult]) -> Vec<String> {
    let depth = |r: &RunResult| r.level("depth").and_then(|d| d.parse::<i64>().ok());
    let (Some(lo), Some(hi)) = (
        runs.iter().filter_map(depth).min(),
        runs.iter().filter_map(depth).max(),
    ) else {
        return Vec::new();
    };
    let at = |act: &str, d: i64| {
        runs.iter()
            .find(|r| r.level("activation") == Some(act) && depth(r) == Some(d))
    };
    let mut out = Vec::new();
    let (mut vanish, mut hold) = (Vec::new(), Vec::new());
    for act in ACTIVATIONS {
        let (Some(a), Some(b)) = (at(act, lo), at(act, hi)) else {
            continue;
        };
        out.push(format!(
            "With {act}, the first layer's gradient is {} at depth {hi} ({} at depth {lo}).",
            ratio(b.init_ratio),
            ratio(a.init_ratio)
                .replace(" of the last layer's", "")
                .replace(" times the last layer's", " times")
        ));
        if b.init_ratio < VANISHED && b.init_ratio < a.init_ratio {
            vanish.push(act.to_string());
        } else if b.init_ratio.is_finite() && b.init_ratio <= 1.0 / VANISHED {
            hold.push(act.to_string());
        }
    }
    if !vanish.is_empty() || !hold.is_empty() {
        let mut s = format!("From {lo} to {hi} hidden layers, at initialization, ");
        if !vanish.is_empty() {
            s += &format!(
                "the first layer's share fell below {VANISHED} with {}",
                list(&vanish)
            );
        }
        if !hold.is_empty() {
            if !vanish.is_empty() {
                s += ", while it ";
            } else {
                s += "it ";
            }
            s += &format!(
                "stayed within a factor 10 of the last layer's with {}",
                list(&hold)
            );
        }
        s.push('.');
        out.insert(0, s);
    }
    out
}
