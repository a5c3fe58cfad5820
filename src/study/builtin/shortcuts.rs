//! shortcuts: He et al.'s CIFAR networks with and without their identity shortcuts
//! (plain-N against resnet-N, BatchNorm in both). Without shortcuts the gradient reaching
//! the first convolution is what survives N layers of backward passes; with them each
//! block adds its branch to an identity path, so every layer is a few steps from the loss.
//! Deeper plain nets also train worse (higher training loss with more depth: the
//! degradation problem), which the shortcuts remove.

use toml::Value;

use super::{common, strings, with};
use crate::error::Result;
use crate::study::measure::RunResult;
use crate::study::registry::{Builtin, Context};
use crate::study::sentences::{num, ratio};
use crate::study::spec::{Axis, Size, StudySpec};

pub const STUDY: Builtin = Builtin {
    name: "shortcuts",
    about: "plain-N against resnet-N (N = 20, 32, 56) on CIFAR-10 batches given with --data, \
            else the bundled Fashion-MNIST",
    build,
    summarize,
};

fn build(size: Size, ctx: &Context) -> Result<StudySpec> {
    let (depths, steps, batch): (&[usize], (i64, i64), (i64, i64)) = match size {
        Size::Quick => (&[8, 20], (2, 2), (8, 8)),
        Size::Full => (&[20, 32, 56], (500, 500), (128, 128)),
    };
    let models: Vec<String> = depths
        .iter()
        .flat_map(|d| [format!("plain{d}"), format!("resnet{d}")])
        .collect();
    let models: Vec<&str> = models.iter().map(String::as_str).collect();
    let mut base = with(
        common(size, steps, batch),
        &[
            ("batchnorm", Value::from(true)),
            ("init", Value::from("he_normal")),
            ("optimizer", Value::from("momentum")),
            ("lr", Value::from(0.05)),
            ("weight_decay", Value::from(0.0001)),
        ],
    );
    if size == Size::Quick {
        // Evaluating a 20-layer conv net on the CPU costs far more than its two steps:
        // validate on 1 % of the data.
        base.insert("val_fraction".into(), Value::from(0.01));
    }
    let data = match &ctx.data {
        Some(dir) => {
            base.insert(
                "data".into(),
                Value::from(dir.to_string_lossy().into_owned()),
            );
            format!("the CIFAR-10-format data in {}", dir.display())
        }
        None => "the bundled Fashion-MNIST images (28×28 grey; give CIFAR-10 batches with \
                 --data DIR to train on them instead)"
            .to_string(),
    };
    Ok(StudySpec {
        name: STUDY.name.into(),
        title: "Shortcut connections".into(),
        question: format!(
            "Plain convolutional networks against the same networks with identity shortcuts \
             (ResNets), at depths {}, trained on {data}: does the first layer still get a \
             gradient, and does the deeper plain net train worse?",
            depths
                .iter()
                .map(|d| d.to_string())
                .collect::<Vec<_>>()
                .join(", ")
        ),
        base,
        axes: vec![Axis::over("model", strings(&models))],
        x_axis: None,
    })
}

fn summarize(_: &StudySpec, runs: &[RunResult]) -> Vec<String> {
    let mut out = Vec::new();
    let depth = |r: &RunResult, family: &str| -> Option<usize> {
        r.level("model")?.strip_prefix(family)?.parse().ok()
    };
    let mut depths: Vec<usize> = runs.iter().filter_map(|r| depth(r, "plain")).collect();
    depths.sort_unstable();
    for d in &depths {
        let plain = runs.iter().find(|r| depth(r, "plain") == Some(*d));
        let res = runs.iter().find(|r| depth(r, "resnet") == Some(*d));
        if let (Some(p), Some(r)) = (plain, res) {
            out.push(format!(
                "At {d} layers, the first convolution's gradient is {} without shortcuts and {} \
                 with them; the training loss after {} steps is {} against {}.",
                ratio(p.init_ratio),
                ratio(r.init_ratio)
                    .replace(" of the last layer's", "")
                    .replace(" times the last layer's", " times"),
                p.steps,
                num(p.final_loss),
                num(r.final_loss)
            ));
        }
    }
    if let (Some(lo), Some(hi)) = (depths.first(), depths.last())
        && lo < hi
    {
        let loss = |family: &str, d: usize| {
            runs.iter()
                .find(|r| depth(r, family) == Some(d))
                .map(|r| r.final_loss)
        };
        if let (Some(pl), Some(ph), Some(rl), Some(rh)) = (
            loss("plain", *lo),
            loss("plain", *hi),
            loss("resnet", *lo),
            loss("resnet", *hi),
        ) {
            let verb = |a: f64, b: f64| if b > a { "rose" } else { "fell" };
            out.push(format!(
                "Going from {lo} to {hi} layers, the plain net's final training loss {} ({} → {}) \
                 and the residual net's {} ({} → {}).",
                verb(pl, ph),
                num(pl),
                num(ph),
                verb(rl, rh),
                num(rl),
                num(rh)
            ));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn cifar_data_is_used_when_given_and_the_question_says_which() {
        let given = Context {
            dir: PathBuf::from("d"),
            data: Some(PathBuf::from("/data/cifar-10-batches-bin")),
        };
        let spec = build(Size::Full, &given).unwrap();
        assert_eq!(
            spec.base["data"].as_str(),
            Some("/data/cifar-10-batches-bin")
        );
        assert!(
            spec.question
                .contains("CIFAR-10-format data in /data/cifar-10-batches-bin")
        );
        let models: Vec<&str> = spec.axes[0]
            .levels
            .iter()
            .map(|l| l.label.as_str())
            .collect();
        assert_eq!(
            models,
            [
                "plain20", "resnet20", "plain32", "resnet32", "plain56", "resnet56"
            ]
        );
        let bundled = build(Size::Quick, &Context::default()).unwrap();
        assert!(!bundled.base.contains_key("data"));
        assert!(bundled.question.contains("bundled Fashion-MNIST"));
    }
}
