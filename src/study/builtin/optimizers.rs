//! optimizers: one deep tanh MLP trained by SGD, momentum, AdaGrad, RMSProp and Adam, each
//! at a learning rate usual for it. Adaptive methods divide each parameter's step by a
//! running size of its gradient, so layers whose gradient is small still move.

use toml::Value;

use super::{axis, common, level, with};
use crate::error::Result;
use crate::study::measure::RunResult;
use crate::study::registry::{Builtin, Context};
use crate::study::sentences::num;
use crate::study::spec::{Size, StudySpec};

pub const STUDY: Builtin = Builtin {
    name: "optimizers",
    about: "sgd, momentum, adagrad, rmsprop and adam on one deep tanh MLP",
    build,
    summarize,
};

/// (optimizer, learning rate).
pub const OPTIMIZERS: &[(&str, f64)] = &[
    ("sgd", 0.05),
    ("momentum", 0.01),
    ("adagrad", 0.01),
    ("rmsprop", 0.001),
    ("adam", 0.001),
];

fn build(size: Size, _: &Context) -> Result<StudySpec> {
    let (depth, width) = match size {
        Size::Quick => (8, 32),
        Size::Full => (16, 128),
    };
    let base = with(
        common(size, (20, 500), (32, 128)),
        &[
            ("model", Value::from("mlp")),
            ("depth", Value::from(depth)),
            ("width", Value::from(width)),
            ("activation", Value::from("tanh")),
            ("init", Value::from("xavier_normal")),
        ],
    );
    Ok(StudySpec {
        name: STUDY.name.into(),
        title: "Optimizers".into(),
        question: format!(
            "The same tanh MLP with {depth} hidden layers (width {width}, Glorot init) trained by five \
             optimizers, each at a learning rate usual for it: how fast does each lower the \
             loss, and how do the layers' gradients evolve?"
        ),
        base,
        axes: vec![axis(
            "optimizer",
            OPTIMIZERS
                .iter()
                .map(|(name, lr)| {
                    level(
                        &format!("{name} (lr {lr})"),
                        &[("optimizer", Value::from(*name)), ("lr", Value::from(*lr))],
                    )
                })
                .collect(),
        )],
        x_axis: None,
    })
}

fn summarize(_: &StudySpec, runs: &[RunResult]) -> Vec<String> {
    let mut out: Vec<String> = runs
        .iter()
        .map(|r| {
            let acc = r.val_accuracy.map_or(String::new(), |a| {
                format!(", validation accuracy {:.1} %", 100.0 * a)
            });
            format!(
                "{}: loss {} → {} in {} steps{acc}.",
                r.label(),
                num(r.first_loss),
                num(r.final_loss),
                r.steps
            )
        })
        .collect();
    if let Some(best) = runs
        .iter()
        .filter(|r| r.final_loss.is_finite())
        .min_by(|a, b| a.final_loss.total_cmp(&b.final_loss))
    {
        out.insert(
            0,
            format!(
                "{} reached the lowest training loss ({}).",
                best.label(),
                num(best.final_loss)
            ),
        );
    }
    out
}
