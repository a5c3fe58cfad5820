//! Named convolutional networks: LeNet-5, the CIFAR ResNets of He et al. 2016 (§4.2) with
//! their plain counterparts, and a small depthwise-separable network. Each takes the input
//! shape of the data, so the bundled 1×28×28 images work as well as CIFAR's 3×32×32.

use super::builder::{Builder, gain};
use super::spec::{LossKind, ModelSpec, NodeId};
use crate::error::{Error, Result};
use crate::init::Init;
use crate::ops::Activation;

const RELU: Activation = Activation::Relu;

/// LeNet-5 in its modern form: two 5×5 convolutions with ReLU and 2×2 max pooling, then
/// three dense layers (120, 84, classes).
pub fn lenet5(input: &[usize], classes: usize, init: Init, loss: LossKind) -> Result<ModelSpec> {
    let (mut b, x) = Builder::new("lenet5", input, init);
    let g = gain(RELU);
    let x = b.conv("conv1", x, 6, 5, 1, 2, 1, true, g)?;
    let x = b.act("conv1.act", x, RELU);
    let x = b.maxpool("pool1", x, 2, 2, 0)?;
    let x = b.conv("conv2", x, 16, 5, 1, 0, 1, true, g)?;
    let x = b.act("conv2.act", x, RELU);
    let x = b.maxpool("pool2", x, 2, 2, 0)?;
    let x = b.flatten("flatten", x);
    let x = b.linear("fc1", x, 120, g);
    let x = b.act("fc1.act", x, RELU);
    let x = b.linear("fc2", x, 84, g);
    let x = b.act("fc2.act", x, RELU);
    let logits = b.linear("fc3", x, classes, 1.0);
    b.finish(logits, loss)
}

/// conv → (BN) → ReLU, the unit the CIFAR networks repeat. Without BN the conv has a bias.
#[allow(clippy::too_many_arguments)]
fn conv_bn(
    b: &mut Builder,
    name: &str,
    bn_name: &str,
    x: NodeId,
    out: usize,
    k: usize,
    stride: usize,
    groups: usize,
    bn: bool,
) -> Result<NodeId> {
    let x = b.conv(name, x, out, k, stride, k / 2, groups, !bn, gain(RELU))?;
    Ok(if bn { b.batchnorm(bn_name, x) } else { x })
}

/// The CIFAR network of He et al. with `depth` = 6n + 2 weighted layers: a 3×3 stem of 16
/// channels, three stages of n blocks with 16, 32, 64 channels (the first block of stages 2
/// and 3 strides by 2), global average pooling and a dense read-out. With `residual`, each
/// block adds its input back (a 1×1 strided projection where the shape changes, option B of
/// the paper); without, it is the plain network of the same depth.
pub fn cifar_resnet(
    input: &[usize],
    classes: usize,
    depth: usize,
    residual: bool,
    bn: bool,
    init: Init,
    loss: LossKind,
) -> Result<ModelSpec> {
    if depth < 8 || !(depth - 2).is_multiple_of(6) {
        return Err(Error::config(format!(
            "a CIFAR ResNet has 6n + 2 layers (20, 32, 44, 56, …), not {depth}"
        )));
    }
    let n = (depth - 2) / 6;
    let name = format!(
        "{}{depth}{}",
        if residual { "resnet" } else { "plain" },
        if bn { "" } else { "-nobn" }
    );
    let (mut b, x) = Builder::new(&name, input, init);
    let x = conv_bn(&mut b, "stem.conv", "stem.bn", x, 16, 3, 1, 1, bn)?;
    let mut x = b.act("stem.act", x, RELU);
    for (s, &width) in [16usize, 32, 64].iter().enumerate() {
        for blk in 0..n {
            let p = format!("stage{}.block{}", s + 1, blk + 1);
            let stride = if s > 0 && blk == 0 { 2 } else { 1 };
            let y = conv_bn(
                &mut b,
                &format!("{p}.conv1"),
                &format!("{p}.bn1"),
                x,
                width,
                3,
                stride,
                1,
                bn,
            )?;
            let y = b.act(&format!("{p}.act1"), y, RELU);
            let y = conv_bn(
                &mut b,
                &format!("{p}.conv2"),
                &format!("{p}.bn2"),
                y,
                width,
                3,
                1,
                1,
                bn,
            )?;
            let y = if residual {
                let shortcut = if b.shape(x) != b.shape(y) {
                    conv_bn(
                        &mut b,
                        &format!("{p}.shortcut"),
                        &format!("{p}.shortcut_bn"),
                        x,
                        width,
                        1,
                        stride,
                        1,
                        bn,
                    )?
                } else {
                    x
                };
                b.add(&format!("{p}.add"), y, shortcut)?
            } else {
                y
            };
            x = b.act(&format!("{p}.act2"), y, RELU);
        }
    }
    let x = b.global_avg_pool("pool", x)?;
    let logits = b.linear("fc", x, classes, 1.0);
    b.finish(logits, loss)
}

/// A small depthwise-separable network (MobileNet's block): a 3×3 stem, then three blocks
/// of a 3×3 depthwise convolution (one filter per channel) and a 1×1 pointwise one.
pub fn depthwise_separable(
    input: &[usize],
    classes: usize,
    bn: bool,
    init: Init,
    loss: LossKind,
) -> Result<ModelSpec> {
    let (mut b, x) = Builder::new("dwsep", input, init);
    let x = conv_bn(&mut b, "stem.conv", "stem.bn", x, 32, 3, 1, 1, bn)?;
    let mut x = b.act("stem.act", x, RELU);
    for (i, (out, stride)) in [(64usize, 1usize), (128, 2), (128, 2)]
        .into_iter()
        .enumerate()
    {
        let p = format!("block{}", i + 1);
        let c = b.shape(x)[0];
        let y = conv_bn(
            &mut b,
            &format!("{p}.dw"),
            &format!("{p}.dw_bn"),
            x,
            c,
            3,
            stride,
            c,
            bn,
        )?;
        let y = b.act(&format!("{p}.dw_act"), y, RELU);
        let y = conv_bn(
            &mut b,
            &format!("{p}.pw"),
            &format!("{p}.pw_bn"),
            y,
            out,
            1,
            1,
            1,
            bn,
        )?;
        x = b.act(&format!("{p}.pw_act"), y, RELU);
    }
    let x = b.global_avg_pool("pool", x)?;
    let logits = b.linear("fc", x, classes, 1.0);
    b.finish(logits, loss)
}

/// Model names the config accepts besides `mlp`.
pub const NAMES: &[&str] = &[
    "lenet5", "resnet20", "resnet32", "resnet56", "plain20", "plain32", "plain56", "dwsep",
];

/// The network `name` for `input` and `classes`.
pub fn build(
    name: &str,
    input: &[usize],
    classes: usize,
    bn: bool,
    init: Init,
    loss: LossKind,
) -> Result<ModelSpec> {
    if input.len() != 3 {
        return Err(Error::config(format!(
            "model `{name}` needs image data ([C, H, W]); this data set has {input:?}"
        )));
    }
    match name {
        "lenet5" => lenet5(input, classes, init, loss),
        "dwsep" => depthwise_separable(input, classes, bn, init, loss),
        _ => {
            let (residual, depth) = match (name.strip_prefix("resnet"), name.strip_prefix("plain"))
            {
                (Some(d), _) => (true, d),
                (_, Some(d)) => (false, d),
                _ => {
                    return Err(Error::config(format!(
                        "unknown model `{name}`; use mlp or one of {}",
                        NAMES.join(", ")
                    )));
                }
            };
            let depth = depth
                .parse()
                .map_err(|_| Error::config(format!("unknown model `{name}`")))?;
            cifar_resnet(input, classes, depth, residual, bn, init, loss)
        }
    }
}
