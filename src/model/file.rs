//! Networks described in a TOML file, layer by layer, for `--model-file`:
//!
//! ```toml
//! [[layer]]
//! name = "conv1"
//! op = "conv"            # conv, batchnorm, layernorm, act, maxpool, avgpool, gap,
//! out = 16               # flatten, linear, dropout, add
//! kernel = 3
//! pad = 1
//! [[layer]]
//! name = "conv1.act"
//! op = "act"
//! activation = "relu"
//! [[layer]]
//! name = "sum"
//! op = "add"
//! inputs = ["conv1.act", "input"]
//! ```
//!
//! A layer reads the layer before it unless it names `input` (or `inputs` for `add`);
//! `"input"` is the data. The last layer's output is the logits. Unknown keys, unknown ops,
//! missing sizes and names that no earlier layer defines are errors naming the layer.

use std::collections::HashMap;
use std::path::Path;

use serde::Deserialize;

use super::builder::{Builder, gain};
use super::spec::{LossKind, ModelSpec, NodeId};
use crate::error::{Error, Result};
use crate::init::Init;
use crate::ops::Activation;

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ModelFile {
    name: Option<String>,
    layer: Vec<LayerEntry>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LayerEntry {
    name: String,
    op: String,
    input: Option<String>,
    #[serde(default)]
    inputs: Vec<String>,
    out: Option<usize>,
    kernel: Option<usize>,
    stride: Option<usize>,
    pad: Option<usize>,
    groups: Option<usize>,
    bias: Option<bool>,
    activation: Option<String>,
    p: Option<f32>,
}

const OPS: &str =
    "conv, batchnorm, layernorm, act, maxpool, avgpool, gap, flatten, linear, dropout, add";

/// Reads the network in `path` for inputs of per-sample `shape`.
pub fn load(path: &Path, shape: &[usize], init: Init, loss: LossKind) -> Result<ModelSpec> {
    let text = std::fs::read_to_string(path).map_err(|e| Error::io(path, e))?;
    parse(&text, path, shape, init, loss)
}

pub fn parse(
    text: &str,
    path: &Path,
    shape: &[usize],
    init: Init,
    loss: LossKind,
) -> Result<ModelSpec> {
    let file: ModelFile = toml::from_str(text)
        .map_err(|e| Error::config(format!("{}: {}", path.display(), e.message())))?;
    let bad = |layer: &str, why: String| {
        Error::config(format!("{}: layer `{layer}`: {why}", path.display()))
    };
    if file.layer.is_empty() {
        return Err(Error::config(format!(
            "{}: no [[layer]] entries",
            path.display()
        )));
    }
    let (mut b, input) = Builder::new(file.name.as_deref().unwrap_or("model"), shape, init);
    let mut names: HashMap<String, NodeId> = HashMap::from([("input".to_string(), input)]);
    let mut prev = input;
    for (i, l) in file.layer.iter().enumerate() {
        if names.contains_key(&l.name) {
            return Err(bad(&l.name, "the name is already used".into()));
        }
        let lookup = |n: &str| {
            names.get(n).copied().ok_or_else(|| {
                bad(
                    &l.name,
                    format!("reads `{n}`, which no earlier layer defines"),
                )
            })
        };
        let x = match &l.input {
            Some(n) => lookup(n)?,
            None => prev,
        };
        let need = |v: Option<usize>, key: &str| {
            v.ok_or_else(|| bad(&l.name, format!("op `{}` needs `{key}`", l.op)))
        };
        // The gain of the activation that directly follows, for the initializer.
        let next_gain = file
            .layer
            .get(i + 1)
            .filter(|n| n.op == "act" && n.input.as_deref().is_none_or(|s| s == l.name))
            .and_then(|n| n.activation.as_deref().and_then(Activation::parse))
            .map_or(1.0, gain);
        let node = match l.op.as_str() {
            "conv" => b.conv(
                &l.name,
                x,
                need(l.out, "out")?,
                need(l.kernel, "kernel")?,
                l.stride.unwrap_or(1),
                l.pad.unwrap_or(0),
                l.groups.unwrap_or(1),
                l.bias.unwrap_or(true),
                next_gain,
            )?,
            "batchnorm" => b.batchnorm(&l.name, x),
            "layernorm" => b.layernorm(&l.name, x),
            "act" => {
                let name = l
                    .activation
                    .as_deref()
                    .ok_or_else(|| bad(&l.name, "op `act` needs `activation`".into()))?;
                let act = Activation::parse(name).ok_or_else(|| {
                    bad(
                        &l.name,
                        format!(
                            "unknown activation `{name}`; use one of {}",
                            Activation::ALL_NAMES.join(", ")
                        ),
                    )
                })?;
                b.act(&l.name, x, act)
            }
            "maxpool" | "avgpool" => {
                let k = need(l.kernel, "kernel")?;
                let (stride, pad) = (l.stride.unwrap_or(k), l.pad.unwrap_or(0));
                if l.op == "maxpool" {
                    b.maxpool(&l.name, x, k, stride, pad)?
                } else {
                    b.avgpool(&l.name, x, k, stride, pad)?
                }
            }
            "gap" => b.global_avg_pool(&l.name, x)?,
            "flatten" => b.flatten(&l.name, x),
            "linear" => b.linear(&l.name, x, need(l.out, "out")?, next_gain),
            "dropout" => b.dropout(
                &l.name,
                x,
                l.p.ok_or_else(|| bad(&l.name, "op `dropout` needs `p`".into()))?,
            )?,
            "add" => match l.inputs.as_slice() {
                [a, c] => {
                    let (a, c) = (lookup(a)?, lookup(c)?);
                    b.add(&l.name, a, c)?
                }
                _ => {
                    return Err(bad(
                        &l.name,
                        "op `add` needs `inputs = [\"a\", \"b\"]`".into(),
                    ));
                }
            },
            other => {
                return Err(bad(
                    &l.name,
                    format!("unknown op `{other}`; use one of {OPS}"),
                ));
            }
        };
        names.insert(l.name.clone(), node);
        prev = node;
    }
    b.finish(prev, loss)
}
