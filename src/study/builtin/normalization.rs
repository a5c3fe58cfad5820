//! normalization: a deep sigmoid MLP with Glorot init (which loses its gradient on the way
//! back: the sigmoid's slope is at most 1/4) without normalization, with BatchNorm and with
//! LayerNorm before each activation. BatchNorm's backward pass divides by the batch's
//! standard deviation of each pre-activation, which the shrinking signal made small,
//! undoing the shrinking. LayerNorm divides by a deviation taken across the units of one
//! sample, which also holds the fixed unit-to-unit offsets that the sigmoid's mean of 1/2
//! produces, so it restores much less.
//!
//! The normalized networks are written as model files (`--model-file`) into the study's
//! directory, so each run is an ordinary run that `gradscope train` could repeat.

use std::fmt::Write;

use toml::Value;

use super::{axis, common, level, with};
use crate::error::{Error, Result};
use crate::study::measure::RunResult;
use crate::study::registry::{Builtin, Context};
use crate::study::sentences::ratio;
use crate::study::spec::{Size, StudySpec};

pub const STUDY: Builtin = Builtin {
    name: "normalization",
    about: "a deep sigmoid MLP without normalization, with BatchNorm and with LayerNorm",
    build,
    summarize,
};

/// A model file: `depth` hidden layers of `width`, each Linear → `norm` (if any) →
/// `activation`, then a Linear read-out to 10 classes.
pub fn model_file(depth: usize, width: usize, norm: Option<&str>, activation: &str) -> String {
    let mut s = String::from("# Written by `gradscope study normalization`.\n");
    for i in 1..=depth {
        let _ = write!(
            s,
            "\n[[layer]]\nname = \"hidden{i}\"\nop = \"linear\"\nout = {width}\n"
        );
        if let Some(op) = norm {
            let _ = write!(s, "\n[[layer]]\nname = \"hidden{i}.{op}\"\nop = \"{op}\"\n");
        }
        let _ = write!(
            s,
            "\n[[layer]]\nname = \"hidden{i}.act\"\nop = \"act\"\nactivation = \"{activation}\"\n"
        );
    }
    s.push_str("\n[[layer]]\nname = \"output\"\nop = \"linear\"\nout = 10\n");
    s
}

fn build(size: Size, ctx: &Context) -> Result<StudySpec> {
    let (depth, width): (usize, usize) = match size {
        Size::Quick => (8, 32),
        Size::Full => (20, 128),
    };
    std::fs::create_dir_all(&ctx.dir).map_err(|e| Error::io(&ctx.dir, e))?;
    let mut levels = vec![level(
        "none",
        &[
            ("model", Value::from("mlp")),
            ("activation", Value::from("sigmoid")),
        ],
    )];
    for (label, op) in [("BatchNorm", "batchnorm"), ("LayerNorm", "layernorm")] {
        let path = ctx.dir.join(format!("mlp-{op}-{depth}x{width}.toml"));
        let text = model_file(depth, width, Some(op), "sigmoid");
        std::fs::write(&path, text).map_err(|e| Error::io(&path, e))?;
        let path = path.to_string_lossy().into_owned();
        levels.push(level(label, &[("model_file", Value::from(path))]));
    }
    let base = with(
        common(size, (3, 300), (32, 128)),
        &[
            ("depth", Value::from(depth as i64)),
            ("width", Value::from(width as i64)),
            ("init", Value::from("xavier_normal")),
            ("optimizer", Value::from("momentum")),
            ("lr", Value::from(0.01)),
        ],
    );
    Ok(StudySpec {
        name: STUDY.name.into(),
        title: "Normalization".into(),
        question: format!(
            "A sigmoid MLP with {depth} hidden layers (width {width}, Glorot normal weights) without \
             normalization, with BatchNorm and with LayerNorm between each linear layer and its \
             sigmoid: does normalization bring the first layer's gradient back to the last \
             layer's?"
        ),
        base,
        axes: vec![axis("normalization", levels)],
        x_axis: None,
    })
}

fn summarize(_: &StudySpec, runs: &[RunResult]) -> Vec<String> {
    runs.iter()
        .map(|r| {
            let what = match r.level("normalization") {
                Some("none") | None => "Without normalization".to_string(),
                Some(n) => format!("With {n}"),
            };
            format!(
                "{what}, the first layer's weight gradient is {} at initialization and {} after \
                 {} steps.",
                ratio(r.init_ratio),
                ratio(r.end_ratio)
                    .replace(" of the last layer's", "")
                    .replace(" times the last layer's", " times"),
                r.steps
            )
        })
        .collect()
}
